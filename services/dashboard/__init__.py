"""The operator's read-only dashboard: static page and its loopback proxy (``fedseg-admin``)."""
