"""Loader for the Medical Segmentation Decathlon Task01 (BrainTumour) layout: dataset.json."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from services.node.data.brats import check_labels, read_nifti
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

DATASET_JSON = "dataset.json"
"""The Decathlon's description of a task folder: modalities, labels, training pairs."""

MSD_MODALITIES: tuple[str, str, str, str] = ("FLAIR", "T1w", "t1gd", "T2w")
"""Channel order of Task01 images when dataset.json does not say: FLAIR, T1w, T1gd, T2w."""

# What each modality is called in dataset.json files seen in the wild, by our channel name.
_SYNONYMS: dict[str, frozenset[str]] = {
    "t1": frozenset({"t1", "t1w", "t1n", "t1-weighted"}),
    "t1ce": frozenset({"t1ce", "t1c", "t1gd", "t1-gd", "t1w-gd", "t1post", "t1-contrast"}),
    "t2": frozenset({"t2", "t2w", "t2-weighted"}),
    "flair": frozenset({"flair", "t2f", "t2-flair"}),
}

# Decathlon Task01 labels: 1 oedema, 2 non-enhancing tumour (core), 3 enhancing tumour.
_TC_LABELS = (2, 3)
_WT_LABELS = (1, 2, 3)
_ET_LABELS = (3,)
_KNOWN_LABELS = (0, 1, 2, 3)


@dataclass(frozen=True)
class MsdCaseFiles:
    """One Decathlon case: a four-channel image [X, Y, Z, 4] and its label map [X, Y, Z].

    channels[i] is the image channel holding MODALITIES[i] (t1, t1ce, t2, flair).
    """

    case_id: str
    image: Path
    label: Path | None
    channels: tuple[int, int, int, int]


def _case_id(path: Path) -> str:
    """`BRATS_001` for `imagesTr/BRATS_001.nii.gz`."""
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def channel_order(modality: Mapping[str, str] | None, source: Path) -> tuple[int, int, int, int]:
    """Image channel of t1, t1ce, t2 and flair from dataset.json's ``modality`` {"0": name}.

    None means the Decathlon's own order (MSD_MODALITIES). Raises DataError naming `source`
    unless the entry names exactly four channels 0 to 3, one of each modality.
    """
    if modality is None:
        modality = {str(index): name for index, name in enumerate(MSD_MODALITIES)}
    if sorted(modality) != ["0", "1", "2", "3"]:
        raise DataError(
            f"File {source} lists modality channels {sorted(modality)}; "
            'a four-channel BrainTumour task has channels "0" to "3".'
        )
    found: dict[str, int] = {}
    for key, name in modality.items():
        ours = [mine for mine, names in _SYNONYMS.items() if str(name).strip().lower() in names]
        if len(ours) != 1 or ours[0] in found:
            raise DataError(
                f"File {source} names modality channel {key} {name!r}, which is not one of "
                "T1w, T1gd, T2w, FLAIR or names one of them twice."
            )
        found[ours[0]] = int(key)
    t1, t1ce, t2, flair = (found[name] for name in MODALITIES)
    return (t1, t1ce, t2, flair)


def _read_description(root: Path) -> dict[str, object]:
    path = root / DATASET_JSON
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist or is not a folder.")
    if not path.is_file():
        raise DataError(f"Data folder {root} has no {DATASET_JSON}; it is not a Decathlon task.")
    try:
        description = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DataError(f"File {path} is not readable JSON: {error}") from error
    if not isinstance(description, dict):
        raise DataError(f"File {path} holds a JSON {type(description).__name__}, not an object.")
    return description


def _entry_path(root: Path, value: object, source: Path, what: str, index: int) -> Path:
    if not isinstance(value, str) or not value:
        raise DataError(f'File {source}: training entry {index} has no "{what}" path.')
    path = (root / value).resolve()
    if not path.is_file():
        raise DataError(
            f"File {source}: training entry {index} lists {what} {value!r}, but {path} is missing."
        )
    return path


def find_msd_cases(root: Path) -> list[MsdCaseFiles]:
    """List the ``training`` cases of the Decathlon task folder `root`, sorted by case_id.

    Paths in dataset.json are relative to `root` (``./imagesTr/BRATS_001.nii.gz``). Raises
    DataError naming dataset.json when it is missing, unreadable or lists no training case,
    and naming the file a training entry points to when that file is missing.
    """
    description = _read_description(root)
    source = root / DATASET_JSON
    modality = description.get("modality")
    if modality is not None and not (
        isinstance(modality, dict) and all(isinstance(v, str) for v in modality.values())
    ):
        raise DataError(f'File {source}: "modality" must map channel numbers to names.')
    channels = channel_order(modality, source)
    training = description.get("training")
    if not isinstance(training, list) or not training:
        raise DataError(f'File {source} lists no "training" cases; there is nothing to train on.')
    cases: dict[str, MsdCaseFiles] = {}
    for index, entry in enumerate(training):
        if not isinstance(entry, dict):
            raise DataError(f"File {source}: training entry {index} is not an object.")
        image = _entry_path(root, entry.get("image"), source, "image", index)
        label = _entry_path(root, entry.get("label"), source, "label", index)
        case_id = _case_id(image)
        if case_id in cases:
            raise DataError(f"File {source} lists the case {case_id} twice.")
        cases[case_id] = MsdCaseFiles(case_id, image, label, channels)
    return [cases[case_id] for case_id in sorted(cases)]


def msd_labels_to_regions(seg: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Convert a Decathlon Task01 label map [...] to float32 masks [3, ...] (TC, WT, ET).

    Decathlon labels: 1 oedema, 2 non-enhancing tumour, 3 enhancing tumour, so TC = {2, 3},
    WT = {1, 2, 3} and ET = {3}. Any other value raises DataError naming the values.
    """
    check_labels(seg, _KNOWN_LABELS, "Decathlon")
    regions = [np.isin(seg, labels) for labels in (_TC_LABELS, _WT_LABELS, _ET_LABELS)]
    return np.stack(regions).astype(np.float32)


def load_msd_case(files: MsdCaseFiles, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Case:
    """Read one Decathlon case: image float32 [4, D, H, W] in MODALITIES order, label [3, ...].

    The image file holds [X, Y, Z, 4]; its channels are reordered from the task's order to
    t1, t1ce, t2, flair. Then as the BraTS loader: RAS+ orientation, resampling to `pixdim`,
    z-scores over the brain (see transforms.preprocess). Raises DataError naming the file
    that is unreadable, is not four-channel, does not match the label map's shape or holds
    unknown labels, and when the case has no label map.
    """
    pixdim = check_pixdim(pixdim)
    if files.label is None:
        raise DataError(f"Case {files.case_id} has no label map; training needs labels.")
    data, affine = read_nifti(files.image)
    if data.ndim != 4 or data.shape[-1] != len(MODALITIES):
        raise DataError(
            f"File {files.image} has shape {list(data.shape)}; a four-channel image "
            "[X, Y, Z, 4] was expected."
        )
    seg, seg_affine = read_nifti(files.label, label=True)
    while seg.ndim > 3 and seg.shape[-1] == 1:
        seg = seg[..., 0]
    if seg.shape != data.shape[:3]:
        raise DataError(
            f"File {files.label} has shape {list(seg.shape)}, but {files.image} has "
            f"{list(data.shape[:3])} voxels; a label map must match its image."
        )
    channels = np.moveaxis(data, -1, 0)[list(files.channels)]
    image, image_affine = to_ras(channels, affine)
    ras_seg, ras_seg_affine = to_ras(seg[None], seg_affine)
    try:
        check_labels(ras_seg, _KNOWN_LABELS, "Decathlon")
        image, labels = preprocess(image, image_affine, ras_seg[0], ras_seg_affine, pixdim)
    except (DataError, ValueError) as error:
        raise DataError(f"File {files.label}: {error}") from error
    return Case(
        case_id=files.case_id,
        image=image,
        label=msd_labels_to_regions(labels),
        spacing=output_spacing(image_affine, pixdim),
    )


def load_msd_cases(
    files: Sequence[MsdCaseFiles], pixdim: Pixdim | None = DEFAULT_PIXDIM
) -> list[Case]:
    """Load every case in `files`, in order (see load_msd_case)."""
    return [load_msd_case(case_files, pixdim) for case_files in files]
