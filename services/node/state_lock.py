"""One node per state folder: its privacy ledger, pending update and case cache are its own."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from shared.errors import ConfigurationError

LOCK_FILE = ".lock"


class StateLock:
    """An exclusive lock on ``state_dir/.lock`` for the life of the node process.

    The operating system releases it when the process ends, however it ends, so a crashed
    node never leaves the folder locked.
    """

    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True)
        self.path = state_dir / LOCK_FILE
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._descriptor)
            raise ConfigurationError(
                f"another node is running with the state folder {state_dir} "
                "(FEDSEG_STATE_DIR); each node needs its own"
            ) from None

    def release(self) -> None:
        fcntl.flock(self._descriptor, fcntl.LOCK_UN)
        os.close(self._descriptor)
