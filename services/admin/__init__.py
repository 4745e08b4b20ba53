"""The operator's command line for a running federation: status, runs, revocation."""
