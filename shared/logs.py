"""Logging as every fedseg process sets it up: ISO-8601 times, FEDSEG_LOG_LEVEL honoured."""

from __future__ import annotations

import logging

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DATE_FORMAT = "%Y-%m-%dT%H:%M:%S%z"


def configure(level: str = "info") -> None:
    """Replace whatever handlers an imported library installed (``force``): fedseg's own
    set-up wins, so ``FEDSEG_LOG_LEVEL=info`` shows the node's round lines."""
    logging.basicConfig(level=level.upper(), format=FORMAT, datefmt=DATE_FORMAT, force=True)
