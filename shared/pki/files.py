"""Files of the PKI: atomic writes with their modes, reads, and the names files may take."""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from shared.errors import PKIError
from shared.identity import NAME_PATTERN

_KEY_MODE = 0o600
_CERT_MODE = 0o644


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise PKIError(f"{what} file {path} does not exist") from None
    except OSError as exc:
        raise PKIError(f"{what} file {path} cannot be read: {exc.strerror}") from None


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    """Write via a same-folder temp file and rename, so no reader ever sees a partial file."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The final mode is given at creation, before any byte is written: a key is never
        # readable by others, not even for an instant. O_EXCL refuses a planted symlink.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), mode)  # a strict umask must not hide a certificate
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # so the rename itself survives a crash
        finally:
            os.close(dir_fd)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise PKIError(f"cannot write {path}: {exc.strerror or exc}") from None


def _check_name(name: str) -> None:
    # fullmatch, not match: "$" would also let a trailing newline into a file name or CN.
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise PKIError(
            f"name {name!r} is not allowed: use 1-63 letters, digits, '.', '_' or '-', "
            f"starting with a letter or digit"
        )
