"""Tests of the MONAI preprocessing the loaders apply: orientation, spacing, z-scores."""

from __future__ import annotations

import re

import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import normalise_nonzero
from services.node.data.transforms import (
    check_pixdim,
    normalise,
    preprocess,
    resample,
    to_ras,
    voxel_sizes,
)

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])
"""The DICOM convention: the first two voxel axes run right-to-left and front-to-back."""


def ramp(shape: tuple[int, ...]) -> npt.NDArray[np.float32]:
    return np.arange(np.prod(shape), dtype=np.float32).reshape(shape)


def test_to_ras_flips_lps_axes_and_returns_a_ras_affine() -> None:
    volume = ramp((2, 4, 3, 2))

    oriented, affine = to_ras(volume, LPS)

    np.testing.assert_array_equal(oriented, volume[:, ::-1, ::-1, :])
    np.testing.assert_allclose(np.diag(affine), [1.0, 1.0, 1.0, 1.0])


def test_to_ras_permutes_swapped_axes() -> None:
    swapped = np.array(
        [[0.0, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0, 0, 0, 1]]
    )  # voxel axis 0 runs anterior, axis 1 runs right
    volume = ramp((1, 4, 3, 2))

    oriented, _ = to_ras(volume, swapped)

    np.testing.assert_array_equal(oriented, volume.transpose(0, 2, 1, 3))


def test_to_ras_keeps_label_values_and_dtype() -> None:
    labels = np.array([0, 1, 2, 4], dtype=np.uint8).reshape(1, 4, 1, 1)

    oriented, _ = to_ras(labels, LPS)

    assert oriented.dtype == np.uint8
    np.testing.assert_array_equal(oriented[0, :, 0, 0], [4, 2, 1, 0])


def test_voxel_sizes_reads_columns_of_the_affine() -> None:
    affine = np.diag([-0.5, 2.0, 3.0, 1.0])

    assert voxel_sizes(affine) == (0.5, 2.0, 3.0)


def test_resample_at_target_spacing_returns_the_same_array() -> None:
    volume = ramp((2, 4, 4, 4))

    assert resample(volume, np.eye(4), (1.0, 1.0, 1.0), label=False) is volume
    assert resample(volume, np.diag([2.0, 2, 2, 1]), None, label=False) is volume


def test_resample_image_to_1mm_interpolates_linearly() -> None:
    volume = np.zeros((1, 3, 2, 2), dtype=np.float32)
    volume[0, :, :, :] = np.array([0.0, 10.0, 20.0])[:, None, None]

    out = resample(volume, np.diag([2.0, 1.0, 1.0, 1.0]), (1.0, 1.0, 1.0), label=False)

    assert out.dtype == np.float32
    assert out.shape == (1, 5, 2, 2)
    np.testing.assert_allclose(out[0, :, 0, 0].astype(np.float32), [0, 5, 10, 15, 20], atol=1e-4)


def test_resample_label_uses_nearest_neighbour_and_keeps_dtype() -> None:
    labels = np.array([0, 1, 2, 4], dtype=np.uint8).reshape(1, 4, 1, 1)

    out = resample(labels, np.diag([2.0, 1.0, 1.0, 1.0]), (1.0, 1.0, 1.0), label=True)

    assert out.dtype == np.uint8
    assert out.shape == (1, 7, 1, 1)
    assert set(np.unique(out).tolist()) == {0, 1, 2, 4}


def test_normalise_matches_the_numpy_reference_and_keeps_zeros() -> None:
    rng = np.random.default_rng(1)
    image = rng.normal(300.0, 40.0, (4, 6, 6, 6)).astype(np.float32)
    image[:, :2] = 0.0
    image[3] = 0.0  # an empty channel stays empty

    out = normalise(image)

    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :2], 0.0)
    np.testing.assert_array_equal(out[3], 0.0)
    np.testing.assert_allclose(out, normalise_nonzero(image), atol=1e-5)
    np.testing.assert_allclose(out[:3, 2:].reshape(3, -1).std(axis=1), 1.0, atol=1e-5)


def test_preprocess_resamples_both_and_normalises_the_image() -> None:
    image = ramp((4, 3, 3, 3)) + 1.0
    seg = np.zeros((3, 3, 3), dtype=np.uint8)
    seg[1, 1, 1] = 4
    affine = np.diag([2.0, 2.0, 2.0, 1.0])

    out, labels = preprocess(image, affine, seg, affine, (1.0, 1.0, 1.0))

    assert out.shape == (4, 5, 5, 5)
    assert labels.shape == (5, 5, 5)
    assert labels[2, 2, 2] == 4
    np.testing.assert_allclose(out.reshape(4, -1).mean(axis=1), 0.0, atol=1e-5)


def test_preprocess_different_voxel_sizes_raises() -> None:
    image = ramp((4, 3, 3, 3)) + 1.0
    seg = np.zeros((3, 3, 3), dtype=np.uint8)

    with pytest.raises(ValueError, match=re.escape("the image is [5, 5, 5] but the label map")):
        preprocess(image, np.diag([2.0, 2, 2, 1]), seg, np.eye(4), (1.0, 1.0, 1.0))


@pytest.mark.parametrize("pixdim", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0)])
def test_check_pixdim_rejects_bad_sizes(pixdim: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match=r"pixdim must be three positive sizes in mm, got"):
        check_pixdim(pixdim)


def test_check_pixdim_accepts_none_and_numbers() -> None:
    assert check_pixdim(None) is None
    assert check_pixdim([1, 2, 3]) == (1.0, 2.0, 3.0)
