"""Tests of the privacy mechanisms: selection, noise scales, accounting and policy handling."""
