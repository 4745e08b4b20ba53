"""Tests of the BraTS-layout loader on NIfTI files written by the tests themselves."""

from __future__ import annotations

import re
from pathlib import Path

import nibabel as nib
import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import (
    CaseFiles,
    brats_labels_to_regions,
    find_cases,
    load_case,
    load_cases,
    normalise_nonzero,
    split_cases,
)
from services.node.data.cases import MODALITIES, Case
from shared.errors import DataError

SHAPE = (6, 5, 4)


def save(
    path: Path, data: npt.NDArray[np.generic], affine: npt.NDArray[np.float64] | None = None
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(data, np.eye(4) if affine is None else affine), path)


def write_brats_case(
    root: Path,
    case_id: str,
    seg: npt.NDArray[np.uint8] | None = None,
    ext: str = ".nii.gz",
    shape: tuple[int, int, int] = SHAPE,
) -> npt.NDArray[np.float32]:
    """Write four modalities (channel c holds c + 1 + voxel index) and a seg; return the image."""
    ramp = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    image = np.stack([ramp + channel + 1 for channel in range(4)])
    for channel, name in enumerate(MODALITIES):
        save(root / case_id / f"{case_id}_{name}{ext}", image[channel])
    if seg is not None:
        save(root / case_id / f"{case_id}_seg{ext}", seg)
    return image


def example_seg(shape: tuple[int, int, int] = SHAPE) -> npt.NDArray[np.uint8]:
    seg = np.zeros(shape, dtype=np.uint8)
    seg[1, 1, 1], seg[2, 2, 2], seg[3, 3, 3] = 1, 2, 4
    return seg


def test_find_cases_lists_folders_sorted_with_optional_label(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_b", example_seg())
    write_brats_case(tmp_path, "case_a", None, ext=".nii")
    (tmp_path / "README.txt").write_text("loose files are ignored")

    cases = find_cases(tmp_path)

    assert [case.case_id for case in cases] == ["case_a", "case_b"]
    assert cases[0].modalities == tuple(tmp_path / "case_a" / f"case_a_{m}.nii" for m in MODALITIES)
    assert cases[0].label is None
    assert cases[1].label == tmp_path / "case_b" / "case_b_seg.nii.gz"


def test_find_cases_missing_root_raises(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=re.escape(f"Data folder {tmp_path / 'absent'} does not exist")
    ):
        find_cases(tmp_path / "absent")


def test_find_cases_empty_folder_raises(tmp_path: Path) -> None:
    with pytest.raises(
        DataError, match=re.escape(f"Data folder {tmp_path} contains no case folders.")
    ):
        find_cases(tmp_path)


def test_find_cases_missing_modality_names_the_file(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    (tmp_path / "case_a" / "case_a_t1ce.nii.gz").unlink()

    with pytest.raises(DataError) as error:
        find_cases(tmp_path)

    assert str(tmp_path / "case_a" / "case_a_t1ce.nii.gz") in str(error.value)


def test_find_cases_both_extensions_raises(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    save(tmp_path / "case_a" / "case_a_flair.nii", np.ones(SHAPE, dtype=np.float32))

    with pytest.raises(DataError, match=r"holds both case_a_flair\.nii\.gz and case_a_flair\.nii;"):
        find_cases(tmp_path)


def test_load_case_returns_normalised_image_and_regions(tmp_path: Path) -> None:
    seg = example_seg()
    image = write_brats_case(tmp_path, "case_a", seg)

    case = load_case(find_cases(tmp_path)[0])

    assert case.case_id == "case_a"
    assert case.image.shape == (4, *SHAPE)
    assert case.image.dtype == np.float32
    np.testing.assert_allclose(case.image, normalise_nonzero(image), atol=1e-6)
    np.testing.assert_array_equal(case.label, brats_labels_to_regions(seg))
    assert case.spacing == (1.0, 1.0, 1.0)


def test_load_case_keeps_the_files_voxel_size_without_resampling(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", None)
    lps_2mm = np.diag([-2.0, -1.0, 1.5, 1.0])
    save(tmp_path / "case_a" / "case_a_seg.nii.gz", example_seg(), affine=lps_2mm)
    for name in MODALITIES:
        save(tmp_path / "case_a" / f"case_a_{name}.nii.gz", np.ones(SHAPE, np.float32), lps_2mm)

    native = load_case(find_cases(tmp_path)[0], pixdim=None)
    resampled = load_case(find_cases(tmp_path)[0])

    assert native.spacing == (2.0, 1.0, 1.5)
    assert native.image.shape == (4, *SHAPE)
    assert resampled.spacing == (1.0, 1.0, 1.0)
    assert resampled.image.shape[1] == 2 * SHAPE[0] - 1


def test_spacing_follows_the_axes_after_reorientation(tmp_path: Path) -> None:
    # File axes i, j, k (voxels of 2, 1 and 1.5 mm) run along y, z and x of the scanner.
    permuted = np.array(
        [[0.0, 0.0, 1.5, 0.0], [2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0, 0, 0, 1]]
    )
    save(tmp_path / "case_a" / "case_a_seg.nii.gz", example_seg(), affine=permuted)
    for name in MODALITIES:
        save(tmp_path / "case_a" / f"case_a_{name}.nii.gz", np.ones(SHAPE, np.float32), permuted)

    case = load_case(find_cases(tmp_path)[0], pixdim=None)

    assert case.image.shape == (4, SHAPE[2], SHAPE[0], SHAPE[1])  # now x, y, z
    assert case.spacing == (1.5, 2.0, 1.0)


def test_case_refuses_a_spacing_that_is_not_three_positive_sizes() -> None:
    image, label = np.zeros((4, 2, 2, 2), np.float32), np.zeros((3, 2, 2, 2), np.float32)
    with pytest.raises(
        ValueError, match=r"spacing must be three positive sizes in mm, got \(1.0, 0.0, 1.0\)"
    ):
        Case("c", image, label, spacing=(1.0, 0.0, 1.0))


def test_load_case_reorients_to_ras(tmp_path: Path) -> None:
    seg = example_seg()
    lps = np.diag([-1.0, -1.0, 1.0, 1.0])  # first two axes run right-to-left, front-to-back
    write_brats_case(tmp_path, "case_a", None)
    save(tmp_path / "case_a" / "case_a_seg.nii.gz", seg, affine=lps)

    case = load_case(find_cases(tmp_path)[0])

    np.testing.assert_array_equal(case.label, brats_labels_to_regions(seg[::-1, ::-1, :]))


def test_load_case_mismatched_shape_names_the_file(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    flair = tmp_path / "case_a" / "case_a_flair.nii.gz"
    save(flair, np.ones((6, 5, 3), dtype=np.float32))

    with pytest.raises(DataError) as error:
        load_case(find_cases(tmp_path)[0])

    assert str(error.value) == (
        f"File {flair} has shape [6, 5, 3], but {tmp_path / 'case_a' / 'case_a_t1.nii.gz'} "
        "has [6, 5, 4]; all files of a case must have the same shape."
    )


@pytest.mark.parametrize(
    "content", [b"not a nifti file", b"\x1f\x8b\x08\x00truncated gzip"], ids=["garbage", "gzip"]
)
def test_load_case_corrupt_file_names_the_file(tmp_path: Path, content: bytes) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    t2 = tmp_path / "case_a" / "case_a_t2.nii.gz"
    t2.write_bytes(content)

    with pytest.raises(DataError, match=re.escape(f"File {t2} is not a readable NIfTI volume")):
        load_case(find_cases(tmp_path)[0])


def test_load_case_truncated_file_names_the_file(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    t1 = tmp_path / "case_a" / "case_a_t1.nii.gz"
    t1.write_bytes(t1.read_bytes()[:60])

    with pytest.raises(DataError, match=re.escape(f"File {t1} is not a readable NIfTI volume")):
        load_case(find_cases(tmp_path)[0])


def test_load_case_bad_header_names_the_file(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg(), ext=".nii")
    t1ce = tmp_path / "case_a" / "case_a_t1ce.nii"
    content = bytearray(t1ce.read_bytes())
    content[70:72] = (4095).to_bytes(2, "little")  # the NIfTI-1 datatype code
    t1ce.write_bytes(bytes(content))

    with pytest.raises(DataError, match=re.escape(f"File {t1ce} is not a readable NIfTI volume")):
        load_case(find_cases(tmp_path)[0])


def test_load_case_unknown_label_names_the_file_and_values(tmp_path: Path) -> None:
    seg = example_seg()
    seg[0, 0, 0], seg[0, 0, 1] = 7, 5
    write_brats_case(tmp_path, "case_a", seg)

    with pytest.raises(DataError) as error:
        load_case(find_cases(tmp_path)[0])

    assert str(error.value) == (
        f"File {tmp_path / 'case_a' / 'case_a_seg.nii.gz'}: Label map holds values 5, 7 "
        "that are not BraTS labels [0, 1, 2, 3, 4]."
    )


def test_load_case_without_label_raises(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", None)

    with pytest.raises(DataError, match="Case case_a has no label map"):
        load_case(find_cases(tmp_path)[0])


def test_load_cases_keeps_order(tmp_path: Path) -> None:
    write_brats_case(tmp_path, "case_a", example_seg())
    write_brats_case(tmp_path, "case_b", example_seg())

    cases = load_cases(list(reversed(find_cases(tmp_path))))

    assert [case.case_id for case in cases] == ["case_b", "case_a"]


def test_brats_labels_to_regions_exact() -> None:
    seg = np.array([[0, 1, 2, 4, 3]], dtype=np.uint8)

    regions = brats_labels_to_regions(seg)

    assert regions.dtype == np.float32
    assert regions.shape == (3, 1, 5)
    np.testing.assert_array_equal(
        regions[:, 0],
        [
            [0, 1, 0, 1, 1],  # TC = {1, 4} (3 as 4)
            [0, 1, 1, 1, 1],  # WT = {1, 2, 4}
            [0, 0, 0, 1, 1],  # ET = {4}
        ],
    )


def test_brats_labels_to_regions_unknown_value_raises() -> None:
    with pytest.raises(DataError, match=r"values 2\.5, 6 that are not BraTS labels"):
        brats_labels_to_regions(np.array([0.0, 2.5, 6.0, 4.0]))


def test_normalise_nonzero_z_scores_foreground_and_keeps_zeros() -> None:
    rng = np.random.default_rng(0)
    image = rng.normal(500.0, 80.0, (2, 10, 10, 10)).astype(np.float32)
    image[:, :3] = 0.0

    out = normalise_nonzero(image)

    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :3], 0.0)
    foreground = out[:, 3:].reshape(2, -1)
    np.testing.assert_allclose(foreground.mean(axis=1), 0.0, atol=1e-5)
    np.testing.assert_allclose(foreground.std(axis=1), 1.0, atol=1e-5)


def test_normalise_nonzero_constant_and_empty_channels_stay_finite() -> None:
    image = np.zeros((2, 3, 3, 3), dtype=np.float32)
    image[0, 1] = 7.0

    out = normalise_nonzero(image)

    np.testing.assert_array_equal(out, 0.0)


def case_list(count: int) -> list[CaseFiles]:
    paths = (Path("t1"), Path("t1ce"), Path("t2"), Path("flair"))
    return [CaseFiles(f"case_{index:02d}", paths, None) for index in range(count)]


def test_split_cases_is_deterministic_and_order_independent() -> None:
    cases = case_list(10)

    first = split_cases(cases, 0.3, seed=4)
    again = split_cases(list(reversed(cases)), 0.3, seed=4)
    other = split_cases(cases, 0.3, seed=5)

    assert first == again
    assert len(first[0]) == 7
    assert len(first[1]) == 3
    assert sorted(first[0] + first[1], key=lambda case: case.case_id) == cases
    assert first != other


@pytest.mark.parametrize(
    ("count", "fraction", "expected"), [(2, 0.1, 1), (5, 0.01, 1), (1, 0.5, 0)]
)
def test_split_cases_validation_size(count: int, fraction: float, expected: int) -> None:
    train, val = split_cases(case_list(count), fraction, seed=0)

    assert len(val) == expected
    assert len(train) == count - expected


def test_split_cases_zero_fraction_keeps_all_for_training() -> None:
    assert split_cases(case_list(4), 0.0, seed=0) == (case_list(4), [])


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_split_cases_fraction_out_of_range_raises(fraction: float) -> None:
    with pytest.raises(ValueError, match=rf"val_fraction must be in \[0, 1\), got {fraction}"):
        split_cases(case_list(4), fraction, seed=0)
