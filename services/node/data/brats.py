"""Loader for the BraTS folder layout: one folder per case, four modalities and a seg."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

import nibabel as nib
import numpy as np
import numpy.typing as npt
from nibabel.filebasedimages import ImageFileError
from nibabel.spatialimages import HeaderDataError

from services.node.data.cases import MODALITIES, Case
from services.node.data.transforms import (
    DEFAULT_PIXDIM,
    Pixdim,
    check_pixdim,
    output_spacing,
    preprocess,
    to_ras,
)
from shared.errors import DataError

LABEL_SUFFIX = "seg"
"""File suffix of the label map: `<case_id>_seg.nii.gz`."""

BRATS_2023_MODALITIES: tuple[str, str, str, str] = ("t1n", "t1c", "t2w", "t2f")
"""BraTS 2023 file suffixes of t1, t1ce, t2 and flair: `<case_id>-t1n.nii.gz` and so on."""

NIFTI_EXTENSIONS: tuple[str, str] = (".nii.gz", ".nii")
"""Accepted file endings, in order of preference."""

# BraTS label values: 1 necrotic / non-enhancing core, 2 peritumoral oedema, 4 enhancing tumour.
# The BraTS 2023 release renumbered enhancing tumour to 3, so 3 is read as an alias of 4.
_TC_LABELS = (1, 3, 4)
_WT_LABELS = (1, 2, 3, 4)
_ET_LABELS = (3, 4)
_KNOWN_LABELS = (0, 1, 2, 3, 4)

# What a damaged or non-NIfTI file raises inside nibabel, numpy or gzip.
_READ_ERRORS = (ImageFileError, HeaderDataError, OSError, EOFError, ValueError, zlib.error)


@dataclass(frozen=True)
class CaseFiles:
    """The files of one case on disk; modalities are in MODALITIES order, label may be absent."""

    case_id: str
    modalities: tuple[Path, Path, Path, Path]
    label: Path | None


def _find_file(folder: Path, stem: str) -> Path | None:
    """Return `folder/stem.nii.gz` or `folder/stem.nii`, or None when neither exists."""
    present = [folder / f"{stem}{ext}" for ext in NIFTI_EXTENSIONS]
    present = [path for path in present if path.is_file()]
    if len(present) > 1:
        raise DataError(
            f"Case folder {folder} holds both {present[0].name} and {present[1].name}; "
            "keep only one of them."
        )
    return present[0] if present else None


def _require_file(folder: Path, stem: str) -> Path:
    """Return `folder/stem.nii.gz` or `folder/stem.nii`; DataError naming it when absent."""
    path = _find_file(folder, stem)
    if path is None:
        raise DataError(
            f"Case folder {folder} is missing {folder / (stem + NIFTI_EXTENSIONS[0])} "
            f"(or {stem}{NIFTI_EXTENSIONS[1]})."
        )
    return path


def _naming(folder: Path, case_id: str) -> tuple[tuple[str, str, str, str], str]:
    """The file stems of the four modalities and the label map of the case in `folder`.

    BraTS 2018 to 2021 name files `<case_id>_t1`, `_t1ce`, `_t2`, `_flair`, `_seg`; the 2023
    release `<case_id>-t1n`, `-t1c`, `-t2w`, `-t2f`, `-seg`. The naming with more files
    present wins, the older one on a tie, so that a missing file is named as expected.
    """
    classic = tuple(f"{case_id}_{name}" for name in MODALITIES)
    recent = tuple(f"{case_id}-{name}" for name in BRATS_2023_MODALITIES)

    def present(stems: tuple[str, ...]) -> int:
        return sum(
            (folder / f"{stem}{ext}").is_file() for stem in stems for ext in NIFTI_EXTENSIONS
        )

    if present(recent) > present(classic):
        return (recent[0], recent[1], recent[2], recent[3]), f"{case_id}-{LABEL_SUFFIX}"
    return (classic[0], classic[1], classic[2], classic[3]), f"{case_id}_{LABEL_SUFFIX}"


def find_cases(root: Path) -> list[CaseFiles]:
    """List the cases under `root` (one sub-folder per case), sorted by case_id.

    Hidden entries and loose files in `root` are ignored; every sub-folder must hold all four
    modalities, named as in BraTS 2018 to 2021 (`<case_id>_t1ce.nii.gz`) or as in BraTS 2023
    (`<case_id>-t1c.nii.gz`). The label map `<case_id>_seg` (`-seg`) is optional here (it is
    None when absent).
    """
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist or is not a folder.")
    folders = sorted(
        (entry for entry in root.iterdir() if entry.is_dir() and not entry.name.startswith(".")),
        key=lambda entry: entry.name,
    )
    if not folders:
        raise DataError(f"Data folder {root} contains no case folders.")
    cases: list[CaseFiles] = []
    for folder in folders:
        case_id = folder.name
        stems, label_stem = _naming(folder, case_id)
        t1, t1ce, t2, flair = (_require_file(folder, stem) for stem in stems)
        label = _find_file(folder, label_stem)
        cases.append(CaseFiles(case_id=case_id, modalities=(t1, t1ce, t2, flair), label=label))
    return cases


def check_labels(seg: npt.NDArray[np.generic], known: Sequence[int], scheme: str = "BraTS") -> None:
    """Raise DataError naming the values of the label map `seg` [...] that are not in `known`."""
    valid = np.isin(seg, known)
    if not valid.all():
        unknown = np.unique(seg[~valid])
        shown = ", ".join(f"{value:g}" for value in unknown[:10].tolist())
        raise DataError(
            f"Label map holds values {shown} that are not {scheme} labels {list(known)}."
        )


def brats_labels_to_regions(seg: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Convert a BraTS label map [...] to float32 region masks [3, ...] in TC, WT, ET order.

    TC = {1, 4}, WT = {1, 2, 4}, ET = {4}; label 3 (BraTS 2023) counts as 4. Any other value
    raises DataError naming the values.
    """
    check_labels(seg, _KNOWN_LABELS)
    regions = [np.isin(seg, labels) for labels in (_TC_LABELS, _WT_LABELS, _ET_LABELS)]
    return np.stack(regions).astype(np.float32)


def normalise_nonzero(image: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Z-score each channel of `image` [C, ...] over its non-zero voxels; zeros stay zero.

    Same convention as MONAI NormalizeIntensity(nonzero=True, channel_wise=True): the
    background outside the skull-stripped brain is left at 0. Returns float32 [C, ...].
    """
    out = np.zeros(image.shape, dtype=np.float32)
    for channel in range(image.shape[0]):
        values = image[channel]
        mask = values != 0
        if not mask.any():
            continue
        foreground = values[mask].astype(np.float64)
        mean = foreground.mean()
        std = foreground.std()
        scale = std if std > 0 else 1.0
        out[channel][mask] = ((foreground - mean) / scale).astype(np.float32)
    return out


Affine = npt.NDArray[np.float64]


def read_nifti(path: Path, *, label: bool = False) -> tuple[npt.NDArray[np.generic], Affine]:
    """Read a NIfTI file as stored: (array [X, Y, Z, ...], affine [4, 4] in RAS+ world mm).

    Images come back as scaled float32 intensities; label maps (label=True) in their stored
    dtype, so that label values are compared exactly. Raises DataError naming the file when
    it is missing, damaged or not NIfTI.
    """
    try:
        img = nib.load(path)
        if not isinstance(img, nib.Nifti1Image):  # Nifti2Image is a subclass
            raise ImageFileError(f"nibabel read it as {type(img).__name__}")
        data = np.asanyarray(img.dataobj) if label else img.get_fdata(dtype=np.float32)
        affine = np.asarray(img.affine, dtype=np.float64)
    except _READ_ERRORS as error:
        raise DataError(f"File {path} is not a readable NIfTI volume: {error}") from error
    return data, affine


def _read_volume(path: Path, *, label: bool = False) -> tuple[npt.NDArray[np.generic], Affine]:
    """Read one 3D volume reoriented to RAS+: (array [D, H, W], its affine [4, 4])."""
    data, affine = read_nifti(path, label=label)
    # Some exporters write 3D volumes as [X, Y, Z, 1].
    while data.ndim > 3 and data.shape[-1] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(f"File {path} holds a {data.ndim}D array; a 3D volume was expected.")
    oriented, ras_affine = to_ras(data[None], affine)
    return oriented[0], ras_affine


def load_case(files: CaseFiles, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Case:
    """Read one case: image float32 [4, D, H, W] normalised per channel, label [3, D, H, W].

    Each file is reoriented to RAS+ by its own affine (D, H, W are the resulting voxel
    axes), resampled to `pixdim` mm when its voxels differ from it (None keeps them), and the
    image z-scored per channel over the brain (see transforms.preprocess). Raises DataError
    naming the file that is unreadable, has a different shape from the first modality, or
    holds unknown labels, and when the case has no label map.
    """
    pixdim = check_pixdim(pixdim)
    if files.label is None:
        raise DataError(
            f"Case {files.case_id} has no label map ({files.case_id}_{LABEL_SUFFIX}.nii.gz); "
            "training needs labels."
        )
    read = [_read_volume(path) for path in files.modalities]
    volumes = [volume for volume, _ in read]
    seg, seg_affine = _read_volume(files.label, label=True)
    reference_path, reference_shape = files.modalities[0], volumes[0].shape
    for path, volume in zip((*files.modalities, files.label), (*volumes, seg), strict=True):
        if volume.shape != reference_shape:
            raise DataError(
                f"File {path} has shape {list(volume.shape)}, but {reference_path} has "
                f"{list(reference_shape)}; all files of a case must have the same shape."
            )
    try:
        check_labels(seg, _KNOWN_LABELS)  # before any resampling work
        image, seg = preprocess(np.stack(volumes), read[0][1], seg, seg_affine, pixdim)
    except (DataError, ValueError) as error:
        raise DataError(f"File {files.label}: {error}") from error
    return Case(
        case_id=files.case_id,
        image=image,
        label=brats_labels_to_regions(seg),
        spacing=output_spacing(read[0][1], pixdim),
    )


def load_cases(files: Sequence[CaseFiles], pixdim: Pixdim | None = DEFAULT_PIXDIM) -> list[Case]:
    """Load every case in `files`, in order (see load_case)."""
    return [load_case(case_files, pixdim) for case_files in files]


class HasCaseId(Protocol):
    """Anything that names its case: BraTS CaseFiles, Decathlon entries, loaded cases."""

    @property
    def case_id(self) -> str: ...


CaseT = TypeVar("CaseT", bound=HasCaseId)


def split_cases(
    cases: Sequence[CaseT], val_fraction: float, seed: int
) -> tuple[list[CaseT], list[CaseT]]:
    """Split cases of any layout into (train, validation), deterministically for a seed.

    The split does not depend on the input order. With val_fraction > 0 and at least two
    cases, validation gets max(1, round(val_fraction * n)) cases and training keeps at least
    one; val_fraction 0 puts every case in training. Both lists are sorted by case_id.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    ordered = sorted(cases, key=lambda case: case.case_id)
    count = len(ordered)
    num_val = 0
    if val_fraction > 0 and count >= 2:
        num_val = min(max(1, round(val_fraction * count)), count - 1)
    order = np.random.default_rng(seed).permutation(count)
    val_indices = set(order[:num_val].tolist())
    train = [case for index, case in enumerate(ordered) if index not in val_indices]
    val = [case for index, case in enumerate(ordered) if index in val_indices]
    return train, val
