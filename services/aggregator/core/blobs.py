"""Content-addressed blob store: models and updates on disk, named by their SHA-256."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

from starlette.concurrency import run_in_threadpool

from shared.errors import NotFoundError, PayloadTooLargeError, StorageError, StorageFullError

_SHA = re.compile(r"^[0-9a-f]{64}$")


_FULL = {errno.ENOSPC, errno.EDQUOT}


@contextlib.contextmanager
def storage_errors(temporary: Path, what: str) -> Iterator[None]:
    """Turn an OSError of a blob write into StorageError; the temporary file never stays."""
    try:
        yield
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        reason = exc.strerror or type(exc).__name__
        if exc.errno in _FULL:
            raise StorageFullError(
                f"the aggregator's disk is full ({reason}) while writing {what}; nothing was "
                "stored: retry later (operator: free space in the state folder)"
            ) from exc
        raise StorageError(
            f"the aggregator could not write {what} ({reason}); nothing was stored: retry "
            "later (operator: check the state folder is writable)"
        ) from exc
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class BlobStore:
    """Blobs live at ``root/ab/abcdef…``; writes go temp file -> fsync -> rename -> fsync dir.

    A blob is always complete once its name exists, so a row may reference it as soon as
    ``put_*`` returns. Temporary files of an interrupted write are removed at start-up.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def clear_temporary(self) -> int:
        removed = 0
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed

    def digests(self) -> Iterator[str]:
        """Every blob's digest (files named like a SHA-256 under a two-hex-digit folder)."""
        for folder in self.root.iterdir():
            if folder.is_dir() and len(folder.name) == 2 and folder != self.tmp:
                for blob in folder.iterdir():
                    if _SHA.match(blob.name) and blob.name.startswith(folder.name):
                        yield blob.name

    def remove(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA.match(sha256):
            raise NotFoundError(f"{sha256!r} is not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def open_path(self, sha256: str) -> Path:
        """Path of an existing blob, or NotFoundError."""
        blob = self.path(sha256)
        if not blob.is_file():
            raise NotFoundError(f"no blob {sha256}")
        return blob

    def new_temporary(self) -> Path:
        return self.tmp / f"incoming-{secrets.token_hex(8)}"

    def commit(self, temporary: Path, sha256: str) -> Path:
        """Move a fully written, fsynced temporary file into place under its digest."""
        final = self.path(sha256)
        with storage_errors(temporary, f"blob {sha256[:12]}"):
            final.parent.mkdir(exist_ok=True)
            if final.is_file():
                temporary.unlink(missing_ok=True)
                return final
            temporary.replace(final)
            fsync_dir(final.parent)
        return final

    def put_bytes(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        if self.exists(sha256):
            return sha256
        temporary = self.new_temporary()
        with storage_errors(temporary, f"blob {sha256[:12]}"):
            with temporary.open("wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self.commit(temporary, sha256)
        return sha256


class IncomingBlob:
    """A request body streamed to a temporary file with a hard size limit.

    The limit is enforced chunk by chunk, so an oversized body is refused before it is
    buffered. Chunks are gathered into 1 MiB batches that a worker thread hashes and
    writes, which keeps disk I/O and SHA-256 off the event loop while holding at most one
    batch of each upload in memory.
    """

    BATCH = 1 << 20

    def __init__(self, store: BlobStore, limit: int) -> None:
        self.store = store
        self.limit = limit
        self.path = store.new_temporary()
        self.size = 0
        self._digest = hashlib.sha256()
        with storage_errors(self.path, "an upload"):
            self._handle = self.path.open("wb")
        self._batch: list[bytes] = []
        self._batched = 0

    async def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise PayloadTooLargeError(
                f"update body exceeds the limit of {self.limit} bytes; nothing was stored"
            )
        self._batch.append(chunk)
        self._batched += len(chunk)
        if self._batched >= self.BATCH:
            await run_in_threadpool(self._flush)

    def _flush(self) -> None:
        data = b"".join(self._batch)
        self._batch.clear()
        self._batched = 0
        self._digest.update(data)
        with storage_errors(self.path, "an upload"):
            self._handle.write(data)

    def finish(self) -> str:
        """Write what is left and fsync (call from a worker thread); returns the SHA-256."""
        self._flush()
        with storage_errors(self.path, "an upload"):
            self._handle.flush()
            os.fsync(self._handle.fileno())
            self._handle.close()
        return self._digest.hexdigest()

    def discard(self) -> None:
        with contextlib.suppress(OSError):
            self._handle.close()
        self.path.unlink(missing_ok=True)
