"""Preprocessed cases on disk, memory-mapped: a node holds a cohort larger than its RAM.

Each case is decoded, reoriented, resampled and normalised once (``layout.load_source``)
and written as ``image.npy`` (float32 [4, D, H, W]) and ``label.npy`` (uint8 [3, D, H, W],
a quarter of float32's size) under a folder named by a digest of what produced it: the
case's files (path, size, modification time), the voxel size asked for and CACHE_FORMAT.
Later starts map those files read-only instead of preprocessing again, and training reads
only the crop windows it draws, so the operating system's page cache, not the node's heap,
holds what is hot. Editing, replacing or removing a scan changes the digest; entries no
case uses any more are deleted by ``prune``.

The cache holds patient images: it lives in the node's state folder, which must be as
protected as the data folder, and never leaves the hospital.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.node.data.brats import CaseFiles
from services.node.data.cases import Case
from services.node.data.layout import CaseSource, load_source
from services.node.data.transforms import DEFAULT_PIXDIM, Pixdim

log = logging.getLogger("fedseg.node")

CACHE_FORMAT = 1
"""Raise with any change to preprocessing or to the files written, so old entries are redone."""
ENTRY_PREFIX = "case-"
META = "case.json"


def _files(source: CaseSource) -> list[Path]:
    paths = list(source.modalities) if isinstance(source, CaseFiles) else [source.image]
    return paths + ([source.label] if source.label is not None else [])


def entry_name(source: CaseSource, pixdim: Pixdim | None) -> str:
    """The folder of `source`'s entry: a digest of its files' identity and the preprocessing."""
    described = {
        "format": CACHE_FORMAT,
        "case_id": source.case_id,
        "pixdim": pixdim,
        "channels": getattr(source, "channels", None),
        "files": [
            [str(path.resolve()), stat.st_size, stat.st_mtime_ns]
            for path in _files(source)
            for stat in [path.stat()]
        ],
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()
    return f"{ENTRY_PREFIX}{digest[:32]}"


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _save(path: Path, array: npt.NDArray[np.generic]) -> None:
    with path.open("wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


class CaseCache:
    """Preprocessed cases under `root`, one folder per case (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def load(self, source: CaseSource, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Case:
        """The case of `source`, from its entry, preprocessing and writing it first if absent.

        An entry appears whole or not at all (written to a temporary folder, synced, then
        renamed), so a node killed while caching redoes only that case. An entry that cannot
        be read back (damaged on disk, or not written by this code: nothing is unpickled) is
        logged, deleted and written again.
        """
        entry = self.root / entry_name(source, pixdim)
        if (entry / META).is_file():
            try:
                return self._read(entry)
            except (OSError, ValueError, KeyError, TypeError) as error:
                log.warning("case cache: %s is unreadable (%s); preprocessing again", entry, error)
        self._write(entry, load_source(source, pixdim))
        return self._read(entry)

    def prune(self, keep: Iterable[Path]) -> list[Path]:
        """Delete every entry (and leftover temporary folder) not in `keep`; return them."""
        wanted = {path.name for path in keep}
        removed: list[Path] = []
        if not self.root.is_dir():
            return removed
        for path in sorted(self.root.iterdir()):
            stale = path.name.startswith(ENTRY_PREFIX) and path.name not in wanted
            if path.is_dir() and (stale or path.name.startswith(".tmp-")):
                shutil.rmtree(path)
                removed.append(path)
        return removed

    def entry(self, source: CaseSource, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Path:
        return self.root / entry_name(source, pixdim)

    def _write(self, entry: Path, case: Case) -> None:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        _save(staging / "image.npy", np.ascontiguousarray(case.image, dtype=np.float32))
        _save(staging / "label.npy", np.ascontiguousarray(case.label, dtype=np.uint8))
        meta = {"case_id": case.case_id, "spacing": list(case.spacing), "format": CACHE_FORMAT}
        with (staging / META).open("w") as handle:
            json.dump(meta, handle)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_dir(staging)
        if entry.exists():  # half-written (no META) or unreadable
            shutil.rmtree(entry)
        staging.rename(entry)
        _fsync_dir(self.root)

    @staticmethod
    def _read(entry: Path) -> Case:
        meta = json.loads((entry / META).read_text())
        image = np.load(entry / "image.npy", mmap_mode="r", allow_pickle=False)
        label = np.load(entry / "label.npy", mmap_mode="r", allow_pickle=False)
        spacing = tuple(float(value) for value in meta["spacing"])
        return Case(meta["case_id"], image, label, spacing=(spacing[0], spacing[1], spacing[2]))
