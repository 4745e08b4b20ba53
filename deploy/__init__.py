"""Deployment: operator guide, examples, and the compose check's test harness."""
