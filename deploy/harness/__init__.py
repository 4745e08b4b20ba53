"""TEST HARNESS for the images: `make compose-check` (deploy/README.md, "Test harness")."""
