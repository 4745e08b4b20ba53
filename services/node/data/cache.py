"""Preprocessed cases on disk, memory-mapped: a node holds a cohort larger than its RAM.

Each case is decoded, reoriented, resampled and normalised once (``layout.load_source``)
and written as ``image.npy`` (float32 [4, D, H, W]) and ``label.npy`` (uint8 [3, D, H, W],
a quarter of float32's size) under a folder named by a digest of what produced it: the
case's files (path, device, inode, size, modification and change times), the voxel size
asked for, CACHE_FORMAT and the versions of the libraries that preprocess. Any write to a
scan, or its replacement, changes its change time (which no copy tool can set back).
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

import monai
import nibabel
import numpy as np
import numpy.typing as npt

from services.node.data.brats import CaseFiles
from services.node.data.cases import Case
from services.node.data.layout import CaseSource, load_source
from services.node.data.transforms import DEFAULT_PIXDIM, Pixdim

log = logging.getLogger("fedseg.node")

CACHE_FORMAT = 1
"""Raise with any change to preprocessing or to the files written, so old entries are redone."""
CACHE_FOLDER = "cases"
"""The cache's folder inside the node's state folder."""
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
        "libraries": [np.__version__, monai.__version__, nibabel.__version__],
        "files": [
            [str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]
            for path in _files(source)
            for st in [path.stat()]
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


def _private(path: Path) -> int:
    """A new file only its owner can read: the cache holds patient images."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)


def _save(path: Path, array: npt.NDArray[np.generic]) -> None:
    with os.fdopen(_private(path), "wb") as handle:
        np.save(handle, array, allow_pickle=False)
        handle.flush()
        os.fsync(handle.fileno())


class CaseCache:
    """Preprocessed cases under `root`, one folder per case (see the module's docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.used: set[Path] = set()
        """The entries ``load`` has returned: what ``prune`` keeps by default."""

    def load(self, source: CaseSource, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Case:
        """The case of `source`, from its entry, preprocessing and writing it first if absent.

        An entry appears whole or not at all (written to a temporary folder, synced, then
        renamed), so a node killed while caching redoes only that case. An entry that cannot
        be read back (damaged on disk, or not written by this code: nothing is unpickled) is
        logged, deleted and written again.
        """
        entry = self.root / entry_name(source, pixdim)
        self.used.add(entry)
        if (entry / META).is_file():
            try:
                return self._read(entry)
            except (OSError, ValueError, KeyError, TypeError, IndexError) as error:
                log.warning("case cache: %s is unreadable (%s); preprocessing again", entry, error)
        self._write(entry, load_source(source, pixdim))
        return self._read(entry)

    def prune(self, keep: Iterable[Path] | None = None) -> list[Path]:
        """Delete every entry (and leftover temporary folder) not in `keep` (default: the
        entries ``load`` returned); return them."""
        wanted = {path.name for path in (self.used if keep is None else keep)}
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
        self.root.chmod(0o700)  # also when it existed before
        staging = Path(tempfile.mkdtemp(prefix=".tmp-", dir=self.root))
        _save(staging / "image.npy", np.ascontiguousarray(case.image, dtype=np.float32))
        _save(staging / "label.npy", np.ascontiguousarray(case.label, dtype=np.uint8))
        meta = {"case_id": case.case_id, "spacing": list(case.spacing), "format": CACHE_FORMAT}
        with os.fdopen(_private(staging / META), "w") as handle:
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
        if image.dtype != np.float32 or label.dtype != np.uint8:
            raise ValueError(f"dtypes {image.dtype} and {label.dtype}, not float32 and uint8")
        x, y, z = (float(value) for value in meta["spacing"])
        return Case(str(meta["case_id"]), image, label, spacing=(x, y, z))
