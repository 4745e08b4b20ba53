"""Which layout a hospital's data folder has (BraTS folders or a Decathlon task), and its cases."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from pathlib import Path

from services.node.data.brats import CaseFiles, find_cases, load_case, split_cases
from services.node.data.cases import Case
from services.node.data.msd import DATASET_JSON, MsdCaseFiles, find_msd_cases, load_msd_case
from services.node.data.transforms import DEFAULT_PIXDIM, Pixdim
from shared.errors import DataError

CaseSource = CaseFiles | MsdCaseFiles
"""The files of one case in either layout."""


class DataLayout(StrEnum):
    """The folder layouts a node reads."""

    BRATS = "brats"
    """One folder per case: `<id>/<id>_t1.nii.gz` ... `_seg` (2018-2021) or `-t1n` ... (2023)."""
    MSD = "msd"
    """Medical Segmentation Decathlon Task01: dataset.json, imagesTr/, labelsTr/."""


def detect_layout(root: Path) -> DataLayout:
    """MSD when `root` holds a dataset.json, BraTS otherwise.

    Raises DataError when `root` is not a folder, and when it is the folder above a
    Decathlon task (a sub-folder holds the dataset.json), naming the folder to use instead.
    """
    if not root.is_dir():
        raise DataError(f"Data folder {root} does not exist or is not a folder.")
    if (root / DATASET_JSON).is_file():
        return DataLayout.MSD
    tasks = sorted(path.parent for path in root.glob(f"*/{DATASET_JSON}") if path.is_file())
    if tasks:
        raise DataError(
            f"Data folder {root} holds the Decathlon task {tasks[0]}, not case folders; "
            f"point the node at {tasks[0]} instead."
        )
    return DataLayout.BRATS


def find_local_cases(root: Path) -> list[CaseSource]:
    """The cases of the data folder `root` in whichever layout it has, sorted by case_id.

    Raises DataError naming the folder or file when the folder is empty, a modality is
    missing or dataset.json is unreadable (see find_cases and find_msd_cases).
    """
    if detect_layout(root) is DataLayout.MSD:
        return list(find_msd_cases(root))
    return list(find_cases(root))


def load_source(source: CaseSource, pixdim: Pixdim | None = DEFAULT_PIXDIM) -> Case:
    """Load one case of either layout: image float32 [4, D, H, W], label float32 [3, D, H, W]."""
    if isinstance(source, MsdCaseFiles):
        return load_msd_case(source, pixdim)
    return load_case(source, pixdim)


split_sources = split_cases
"""Every layout splits the same way: the same case ids, fraction and seed, the same split."""


def load_local_split(
    root: Path,
    val_fraction: float,
    seed: int,
    pixdim: Pixdim | None = DEFAULT_PIXDIM,
    load: Callable[[CaseSource, Pixdim | None], Case] = load_source,
) -> tuple[list[Case], list[Case]]:
    """A node's data: the (train, validation) cases of `root`, loaded and preprocessed.

    Detects the layout, splits by case id (split_sources) and loads every case with `load`
    (load_source, or a CaseCache's load). Every case must have a label map; DataError names
    the first file that cannot be used.
    """
    train, val = split_sources(find_local_cases(root), val_fraction, seed)
    return [load(s, pixdim) for s in train], [load(s, pixdim) for s in val]
