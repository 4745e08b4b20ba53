"""Tests of layout detection and a node's split, over BraTS and Decathlon folders."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import CaseFiles, split_cases
from services.node.data.layout import (
    DataLayout,
    detect_layout,
    find_local_cases,
    load_local_split,
    load_source,
    split_sources,
)
from services.node.data.msd import MsdCaseFiles
from shared.errors import DataError
from tests.services.node.data.test_msd_loader import write_task

SHAPE = (6, 5, 4)
BRATS_2021 = ("t1", "t1ce", "t2", "flair")
BRATS_2023 = ("t1n", "t1c", "t2w", "t2f")


def save(path: Path, data: npt.NDArray[np.generic]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4)), path)  # type: ignore[no-untyped-call]


def write_brats(
    root: Path, case_id: str, naming: str = "2021", labels: tuple[int, int, int] = (1, 2, 4)
) -> None:
    """One BraTS case: 2021 names (`_t1`, `_seg`) or 2023 names (`-t1n`, `-seg`)."""
    separator, names = ("_", BRATS_2021) if naming == "2021" else ("-", BRATS_2023)
    ramp = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE) + 1.0
    for channel, name in enumerate(names):
        save(root / case_id / f"{case_id}{separator}{name}.nii.gz", ramp + channel)
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[1, 1, 1], seg[2, 2, 2], seg[3, 3, 3] = labels
    save(root / case_id / f"{case_id}{separator}seg.nii.gz", seg)


def test_detect_layout_brats_and_msd(tmp_path: Path) -> None:
    write_brats(tmp_path / "brats", "case_a")
    write_task(tmp_path / "msd")

    assert detect_layout(tmp_path / "brats") is DataLayout.BRATS
    assert detect_layout(tmp_path / "msd") is DataLayout.MSD


def test_detect_layout_missing_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=re.escape(f"Data folder {tmp_path / 'absent'} does not exist")
    ):
        detect_layout(tmp_path / "absent")


def test_detect_layout_folder_above_a_task_names_the_task(tmp_path: Path) -> None:
    task = tmp_path / "Task01_BrainTumour"
    write_task(task)

    with pytest.raises(DataError) as error:
        detect_layout(tmp_path)

    assert str(error.value) == (
        f"Data folder {tmp_path} holds the Decathlon task {task}, not case folders; "
        f"point the node at {task} instead."
    )


def test_find_local_cases_returns_each_layouts_files(tmp_path: Path) -> None:
    write_brats(tmp_path / "brats", "case_a")
    write_task(tmp_path / "msd")

    brats = find_local_cases(tmp_path / "brats")
    msd = find_local_cases(tmp_path / "msd")

    assert [type(case) for case in brats] == [CaseFiles]
    assert [type(case) for case in msd] == [MsdCaseFiles, MsdCaseFiles]


def test_find_local_cases_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"Data folder {tmp_path} contains no case")):
        find_local_cases(tmp_path)


def test_brats_2023_names_and_labels_load(tmp_path: Path) -> None:
    write_brats(tmp_path, "BraTS-GLI-00000-000", naming="2023", labels=(1, 2, 3))

    (files,) = find_local_cases(tmp_path)
    case = load_source(files)

    assert isinstance(files, CaseFiles)
    assert files.modalities[1].name == "BraTS-GLI-00000-000-t1c.nii.gz"
    assert files.label is not None
    assert files.label.name == "BraTS-GLI-00000-000-seg.nii.gz"
    assert case.image.shape == (4, *SHAPE)
    # Label 3 is enhancing tumour in the 2023 numbering: in TC, WT and ET.
    np.testing.assert_array_equal(case.label[:, 3, 3, 3], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(case.label[:, 2, 2, 2], [0.0, 1.0, 0.0])


def test_brats_2023_missing_modality_names_the_2023_file(tmp_path: Path) -> None:
    write_brats(tmp_path, "case-a", naming="2023")
    missing = tmp_path / "case-a" / "case-a-t2f.nii.gz"
    missing.unlink()

    with pytest.raises(DataError) as error:
        find_local_cases(tmp_path)

    assert str(missing) in str(error.value)


@pytest.mark.parametrize("naming", ["2021", "2023"])
def test_brats_mismatched_shape_names_the_file(tmp_path: Path, naming: str) -> None:
    write_brats(tmp_path, "case_a", naming=naming)
    name = "case_a_flair.nii.gz" if naming == "2021" else "case_a-t2f.nii.gz"
    save(tmp_path / "case_a" / name, np.ones((6, 5, 3), dtype=np.float32))

    with pytest.raises(DataError, match=re.escape(f"File {tmp_path / 'case_a' / name} has shape")):
        load_source(find_local_cases(tmp_path)[0])


@pytest.mark.parametrize("naming", ["2021", "2023"])
def test_brats_unreadable_file_names_it(tmp_path: Path, naming: str) -> None:
    write_brats(tmp_path, "case_a", naming=naming)
    name = "case_a_t1.nii.gz" if naming == "2021" else "case_a-t1n.nii.gz"
    (tmp_path / "case_a" / name).write_bytes(b"not a nifti file")

    with pytest.raises(DataError, match=re.escape(f"File {tmp_path / 'case_a' / name} is not")):
        load_source(find_local_cases(tmp_path)[0])


def test_brats_resamples_to_1mm(tmp_path: Path) -> None:
    write_brats(tmp_path, "case_a")
    for path in (tmp_path / "case_a").iterdir():
        data = np.asanyarray(nib.load(path).dataobj)  # type: ignore[attr-defined]
        nib.save(nib.Nifti1Image(data, np.diag([1.0, 1, 2, 1])), path)  # type: ignore[no-untyped-call]

    case = load_source(find_local_cases(tmp_path)[0])

    assert case.image.shape == (4, 6, 5, 7)
    # Slice z of the 2 mm grid is slice 2z of the 1 mm grid.
    np.testing.assert_array_equal(case.label[:, 3, 3, 6], [1.0, 1.0, 1.0])  # label 4
    np.testing.assert_array_equal(case.label[:, 2, 2, 4], [0.0, 1.0, 0.0])  # label 2
    np.testing.assert_array_equal(case.label[:, 1, 1, 2], [1.0, 1.0, 0.0])  # label 1


def test_split_sources_matches_split_cases() -> None:
    paths = (Path("t1"), Path("t1ce"), Path("t2"), Path("flair"))
    cases = [CaseFiles(f"case_{index:02d}", paths, None) for index in range(9)]

    for fraction, seed in ((0.2, 0), (0.5, 3), (0.0, 1)):
        assert split_sources(cases, fraction, seed) == split_cases(cases, fraction, seed)


def test_split_sources_bad_fraction_raises() -> None:
    with pytest.raises(ValueError, match=r"val_fraction must be in \[0, 1\), got 1.0"):
        split_sources([], 1.0, 0)


@pytest.mark.parametrize("layout", ["brats", "msd"])
def test_load_local_split_loads_train_and_val(tmp_path: Path, layout: str) -> None:
    if layout == "brats":
        for case_id in ("BRATS_001", "BRATS_002"):
            write_brats(tmp_path, case_id)
    else:
        write_task(tmp_path)

    train, val = load_local_split(tmp_path, 0.5, seed=0)

    assert len(train) == 1
    assert len(val) == 1
    assert {train[0].case_id, val[0].case_id} == {"BRATS_001", "BRATS_002"}
    assert train[0].image.shape == (4, *SHAPE)
    assert train[0].label.shape == (3, *SHAPE)
