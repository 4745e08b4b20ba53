"""Command-line plumbing shared by fedseg's tools: usage errors that return, not exit."""

from __future__ import annotations

import argparse
from typing import NoReturn


class UsageError(Exception):
    """A command-line mistake; raised so a tool's ``main`` returns 2 instead of exiting."""


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError (subparsers inherit it) instead of exiting."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)
