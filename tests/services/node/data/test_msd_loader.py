"""Tests of the Decathlon Task01 loader on dataset.json folders written by the tests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import normalise_nonzero
from services.node.data.msd import (
    MsdCaseFiles,
    channel_order,
    find_msd_cases,
    load_msd_case,
    load_msd_cases,
    msd_labels_to_regions,
)
from shared.errors import DataError

SHAPE = (6, 5, 4)
MSD_ORDER = {"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}
"""Task01's own dataset.json entry."""


def save(path: Path, data: npt.NDArray[np.generic], affine: npt.NDArray[np.float64]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, affine), path)  # type: ignore[no-untyped-call]


def example_seg() -> npt.NDArray[np.uint8]:
    seg = np.zeros(SHAPE, dtype=np.uint8)
    seg[1, 1, 1], seg[2, 2, 2], seg[3, 3, 3] = 1, 2, 3
    return seg


def write_task(
    root: Path,
    case_ids: tuple[str, ...] = ("BRATS_002", "BRATS_001"),
    modality: dict[str, str] | None = MSD_ORDER,
    affine: npt.NDArray[np.float64] | None = None,
) -> npt.NDArray[np.float32]:
    """A Task01 folder; channel c of every image holds 100 * (c + 1) + voxel index.

    Returns the image [X, Y, Z, 4] as stored.
    """
    affine = np.eye(4) if affine is None else affine
    ramp = np.arange(np.prod(SHAPE), dtype=np.float32).reshape(SHAPE)
    image = np.stack([ramp + 100.0 * (c + 1) for c in range(4)], axis=-1)
    training = []
    for case_id in case_ids:
        save(root / "imagesTr" / f"{case_id}.nii.gz", image, affine)
        save(root / "labelsTr" / f"{case_id}.nii.gz", example_seg(), affine)
        training.append(
            {"image": f"./imagesTr/{case_id}.nii.gz", "label": f"./labelsTr/{case_id}.nii.gz"}
        )
    description: dict[str, object] = {
        "name": "BRATS",
        "labels": {"0": "background", "1": "edema", "2": "non-enhancing tumor", "3": "enhancing"},
        "numTraining": len(case_ids),
        "training": training,
        "test": [],
    }
    if modality is not None:
        description["modality"] = modality
    (root / "dataset.json").write_text(json.dumps(description))
    return image


def test_find_msd_cases_lists_training_pairs_sorted(tmp_path: Path) -> None:
    write_task(tmp_path)

    cases = find_msd_cases(tmp_path)

    assert [case.case_id for case in cases] == ["BRATS_001", "BRATS_002"]
    assert cases[0].image == (tmp_path / "imagesTr" / "BRATS_001.nii.gz").resolve()
    assert cases[0].label == (tmp_path / "labelsTr" / "BRATS_001.nii.gz").resolve()
    # t1 is channel 1 (T1w), t1ce 2 (t1gd), t2 3 (T2w), flair 0 (FLAIR).
    assert cases[0].channels == (1, 2, 3, 0)


def test_load_msd_case_reorders_channels_and_normalises(tmp_path: Path) -> None:
    stored = write_task(tmp_path)

    case = load_msd_case(find_msd_cases(tmp_path)[0])

    expected = np.moveaxis(stored, -1, 0)[[1, 2, 3, 0]]
    assert case.case_id == "BRATS_001"
    assert case.image.shape == (4, *SHAPE)
    assert case.image.dtype == np.float32
    np.testing.assert_allclose(case.image, normalise_nonzero(expected), atol=1e-5)
    np.testing.assert_array_equal(case.label, msd_labels_to_regions(example_seg()))


def test_msd_labels_to_regions_exact() -> None:
    seg = np.array([[0, 1, 2, 3]], dtype=np.uint8)

    regions = msd_labels_to_regions(seg)

    assert regions.dtype == np.float32
    np.testing.assert_array_equal(
        regions[:, 0],
        [
            [0, 0, 1, 1],  # TC = {2, 3}: non-enhancing and enhancing tumour
            [0, 1, 1, 1],  # WT = {1, 2, 3}
            [0, 0, 0, 1],  # ET = {3}
        ],
    )


def test_load_msd_case_reorients_to_ras(tmp_path: Path) -> None:
    write_task(tmp_path, affine=np.diag([-1.0, -1.0, 1.0, 1.0]))

    case = load_msd_case(find_msd_cases(tmp_path)[0])

    np.testing.assert_array_equal(case.label, msd_labels_to_regions(example_seg()[::-1, ::-1]))


def test_load_msd_case_resamples_to_1mm(tmp_path: Path) -> None:
    write_task(tmp_path, affine=np.diag([2.0, 1.0, 1.0, 1.0]))

    case = load_msd_case(find_msd_cases(tmp_path)[0])
    native = load_msd_case(find_msd_cases(tmp_path)[0], pixdim=None)

    assert case.image.shape == (4, 11, 5, 4)
    assert case.label.shape == (3, 11, 5, 4)
    assert native.image.shape == (4, *SHAPE)
    assert case.spacing == (1.0, 1.0, 1.0)
    assert native.spacing == (2.0, 1.0, 1.0)  # HD95 is measured in mm with this


def test_find_msd_cases_without_modality_uses_the_decathlon_order(tmp_path: Path) -> None:
    write_task(tmp_path, modality=None)

    assert find_msd_cases(tmp_path)[0].channels == (1, 2, 3, 0)


def test_find_msd_cases_follows_a_custom_modality_order(tmp_path: Path) -> None:
    write_task(tmp_path, modality={"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"})

    assert find_msd_cases(tmp_path)[0].channels == (0, 1, 2, 3)


@pytest.mark.parametrize(
    ("modality", "message"),
    [
        ({"0": "FLAIR", "1": "T1w", "2": "t1gd"}, 'lists modality channels ["0", "1", "2"]'),
        ({"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "FLAIR"}, "names modality channel 3 'FLAIR'"),
        ({"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "DWI"}, "names modality channel 3 'DWI'"),
    ],
)
def test_channel_order_bad_modality_names_the_file(
    tmp_path: Path, modality: dict[str, str], message: str
) -> None:
    source = tmp_path / "dataset.json"

    with pytest.raises(DataError) as error:
        channel_order(modality, source)

    assert str(error.value).startswith(f"File {source}")
    assert message.replace('"', "'") in str(error.value)


def test_find_msd_cases_missing_dataset_json_raises(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=re.escape(f"Data folder {tmp_path} has no dataset.json")):
        find_msd_cases(tmp_path)


def test_find_msd_cases_unreadable_json_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "dataset.json").write_text("{not json")

    with pytest.raises(DataError, match=re.escape(f"File {tmp_path / 'dataset.json'} is not")):
        find_msd_cases(tmp_path)


def test_find_msd_cases_empty_training_list_names_the_file(tmp_path: Path) -> None:
    write_task(tmp_path, case_ids=())

    with pytest.raises(DataError) as error:
        find_msd_cases(tmp_path)

    assert str(error.value) == (
        f'File {tmp_path / "dataset.json"} lists no "training" cases; there is nothing to train on.'
    )


@pytest.mark.parametrize("folder", ["imagesTr", "labelsTr"])
def test_find_msd_cases_missing_file_names_it(tmp_path: Path, folder: str) -> None:
    write_task(tmp_path)
    missing = tmp_path / folder / "BRATS_002.nii.gz"
    missing.unlink()

    with pytest.raises(DataError) as error:
        find_msd_cases(tmp_path)

    assert f"but {missing.resolve()} is missing." in str(error.value)
    assert str(error.value).startswith(f"File {tmp_path / 'dataset.json'}: training entry")


def test_load_msd_case_three_dimensional_image_names_the_file(tmp_path: Path) -> None:
    write_task(tmp_path)
    image = tmp_path / "imagesTr" / "BRATS_001.nii.gz"
    save(image, np.ones(SHAPE, dtype=np.float32), np.eye(4))

    with pytest.raises(DataError) as error:
        load_msd_case(find_msd_cases(tmp_path)[0])

    assert str(error.value) == (
        f"File {image.resolve()} has shape [6, 5, 4]; a four-channel image [X, Y, Z, 4] "
        "was expected."
    )


def test_load_msd_case_mismatched_label_shape_names_both_files(tmp_path: Path) -> None:
    write_task(tmp_path)
    label = tmp_path / "labelsTr" / "BRATS_001.nii.gz"
    save(label, np.zeros((6, 5, 3), dtype=np.uint8), np.eye(4))

    with pytest.raises(DataError) as error:
        load_msd_case(find_msd_cases(tmp_path)[0])

    image = (tmp_path / "imagesTr" / "BRATS_001.nii.gz").resolve()
    assert str(error.value) == (
        f"File {label.resolve()} has shape [6, 5, 3], but {image} has [6, 5, 4] voxels; "
        "a label map must match its image."
    )


def test_load_msd_case_unreadable_image_names_the_file(tmp_path: Path) -> None:
    write_task(tmp_path)
    image = tmp_path / "imagesTr" / "BRATS_001.nii.gz"
    image.write_bytes(b"\x1f\x8b\x08\x00truncated gzip")

    with pytest.raises(DataError, match=re.escape(f"File {image.resolve()} is not a readable")):
        load_msd_case(find_msd_cases(tmp_path)[0])


def test_load_msd_case_unknown_label_names_the_file(tmp_path: Path) -> None:
    write_task(tmp_path)
    label = tmp_path / "labelsTr" / "BRATS_001.nii.gz"
    seg = example_seg()
    seg[0, 0, 0] = 4  # a BraTS label, not a Decathlon one
    save(label, seg, np.eye(4))

    with pytest.raises(DataError) as error:
        load_msd_case(find_msd_cases(tmp_path)[0])

    assert str(error.value) == (
        f"File {label.resolve()}: Label map holds values 4 that are not Decathlon labels "
        "[0, 1, 2, 3]."
    )


def test_load_msd_case_without_label_raises(tmp_path: Path) -> None:
    write_task(tmp_path)
    files = find_msd_cases(tmp_path)[0]
    unlabelled = MsdCaseFiles(files.case_id, files.image, None, files.channels)

    with pytest.raises(DataError, match="Case BRATS_001 has no label map"):
        load_msd_case(unlabelled)


def test_load_msd_cases_keeps_order(tmp_path: Path) -> None:
    write_task(tmp_path)

    cases = load_msd_cases(list(reversed(find_msd_cases(tmp_path))))

    assert [case.case_id for case in cases] == ["BRATS_002", "BRATS_001"]
