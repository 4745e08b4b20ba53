"""Synthetic cases and whole sites on disk as BraTS-layout NIfTIs, reused while unchanged."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt

from services.node.data.brats import LABEL_SUFFIX, CaseFiles
from services.node.data.cases import MODALITIES
from services.node.data.synthetic_volumes import (
    GENERATOR_VERSION,
    check_shape,
    site_profile,
    synthesize_case,
)

_MANIFEST = ".fedseg-synth-site{site}.json"


def write_case(
    root: Path,
    case_id: str,
    image: npt.NDArray[np.float32],
    seg: npt.NDArray[np.uint8],
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0),
) -> CaseFiles:
    """Write image [4, D, H, W] and seg [D, H, W] as `root/<case_id>/<case_id>_<name>.nii.gz`.

    The affine is diagonal with `spacing` (RAS+, millimetres), so the loader reads the arrays
    back in the same axis order. Images are stored as float32, the label map as uint8.
    """
    if image.ndim != 4 or image.shape[0] != len(MODALITIES) or seg.shape != image.shape[1:]:
        raise ValueError(
            f"image must be [4, D, H, W] and seg [D, H, W], got {list(image.shape)} "
            f"and {list(seg.shape)}"
        )
    files = _case_files(root, case_id)
    (root / case_id).mkdir(parents=True, exist_ok=True)
    affine = np.diag([*spacing, 1.0])
    volumes = [*(image[c].astype(np.float32) for c in range(len(MODALITIES))), seg.astype(np.uint8)]
    for path, volume in zip(_paths(files), volumes, strict=True):
        # nibabel leaves these two unannotated.
        nifti = nib.Nifti1Image(volume, affine)  # type: ignore[no-untyped-call]
        nifti.header.set_xyzt_units("mm")  # type: ignore[no-untyped-call]
        # nibabel compresses with mtime 0, so equal arrays give byte-identical files.
        nib.save(nifti, path)
    return files


def _case_files(root: Path, case_id: str) -> CaseFiles:
    """The BraTS file names of case `case_id` under `root`, all `.nii.gz`."""
    t1, t1ce, t2, flair = (root / case_id / f"{case_id}_{name}.nii.gz" for name in MODALITIES)
    return CaseFiles(
        case_id, (t1, t1ce, t2, flair), root / case_id / f"{case_id}_{LABEL_SUFFIX}.nii.gz"
    )


def _paths(files: CaseFiles) -> list[Path]:
    """The modality files then the label file of a case."""
    return [*files.modalities, *([files.label] if files.label else [])]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest_matches(manifest: Path, params: dict[str, object], files: list[CaseFiles]) -> bool:
    """Whether `manifest` records `params` and every file still has its recorded hash."""
    try:
        recorded = json.loads(manifest.read_text())
        paths = [path for case in files for path in _paths(case)]
        return bool(
            recorded["params"] == params
            and set(recorded["sha256"]) == {path.name for path in paths}
            and all(recorded["sha256"][path.name] == _sha256(path) for path in paths)
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def write_site(
    root: Path, site_index: int, num_cases: int, shape: tuple[int, int, int], seed: int
) -> list[CaseFiles]:
    """Write cases `site<k>_case<NNN>` (NNN from 000) of site k under `root`; return their files.

    Case i is drawn from the seed sequence [seed, site_index, i] with site_profile(site_index),
    so equal arguments give byte-identical files. A hidden manifest in `root` records the
    arguments and file hashes; when they match, nothing is rewritten. Other case folders of
    the same site (from a larger num_cases) are removed so the site holds exactly these.
    """
    check_shape(shape)
    if num_cases < 1:
        raise ValueError(f"num_cases must be >= 1, got {num_cases}")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    profile = site_profile(site_index)
    case_ids = [f"site{site_index}_case{i:03d}" for i in range(num_cases)]
    files = [_case_files(root, case_id) for case_id in case_ids]
    params: dict[str, object] = {
        "generator_version": GENERATOR_VERSION,
        "site_index": site_index,
        "num_cases": num_cases,
        "shape": list(shape),
        "seed": seed,
    }
    manifest = root / _MANIFEST.format(site=site_index)
    if _manifest_matches(manifest, params, files):
        return files

    root.mkdir(parents=True, exist_ok=True)
    manifest.unlink(missing_ok=True)
    pattern = re.compile(rf"site{site_index}_case\d+")
    for stale in root.iterdir():
        if stale.is_dir() and pattern.fullmatch(stale.name) and stale.name not in case_ids:
            shutil.rmtree(stale)
    for case_index, case_id in enumerate(case_ids):
        rng = np.random.default_rng([seed, site_index, case_index])
        image, seg = synthesize_case(shape, rng, profile)
        write_case(root, case_id, image, seg)
    hashes = {path.name: _sha256(path) for case in files for path in _paths(case)}
    manifest.write_text(json.dumps({"params": params, "sha256": hashes}, indent=2, sort_keys=True))
    return files


def uneven_site_sizes(num_sites: int, total_cases: int, seed: int) -> list[int]:
    """Split `total_cases` over `num_sites` unevenly (Dirichlet weights), each site >= 2.

    The sizes sum to total_cases and are not all equal whenever that is possible.
    """
    if num_sites < 1:
        raise ValueError(f"num_sites must be >= 1, got {num_sites}")
    if total_cases < 2 * num_sites:
        raise ValueError(
            f"total_cases must be at least 2 per site ({2 * num_sites}), got {total_cases}"
        )
    spare = total_cases - 2 * num_sites
    share = np.random.default_rng(seed).dirichlet(np.ones(num_sites)) * spare
    extra = np.floor(share).astype(np.int64)
    # Largest-remainder rounding keeps the total exact.
    for index in np.argsort(extra - share, kind="stable")[: spare - int(extra.sum())]:
        extra[index] += 1
    sizes = [2 + int(count) for count in extra]
    if num_sites > 1 and spare > 0 and len(set(sizes)) == 1:
        sizes[0] += 1
        sizes[-1] -= 1
    return sizes
