"""HD95 per region: exact distances on hand-made masks, spacing, and the empty-mask rules."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from monai.metrics.hausdorff_distance import compute_hausdorff_distance

from services.node.hd95 import case_hd95, mean_distance, worst_distance
from shared.schemas import RegionDistance


def _masks(shape: tuple[int, int, int] = (12, 10, 8)) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.zeros((3, *shape)), torch.zeros((3, *shape))


def test_single_voxels_are_their_distance_apart_in_mm() -> None:
    prediction, label = _masks()
    label[:, 2, 3, 4] = 1
    prediction[0, 5, 3, 4] = 1  # 3 voxels along D
    prediction[1, 2, 7, 4] = 1  # 4 voxels along H
    prediction[2, 5, 7, 4] = 1  # 3 along D and 4 along H: 5 voxels
    assert case_hd95(prediction, label, (1.0, 1.0, 1.0)) == pytest.approx((3.0, 4.0, 5.0))
    # 2 mm voxels along D double the D part only.
    assert case_hd95(prediction, label, (2.0, 1.0, 1.0)) == pytest.approx(
        (6.0, 4.0, math.hypot(6.0, 4.0))
    )


def test_identical_masks_score_zero() -> None:
    _, label = _masks()
    label[:, 2:6, 2:6, 2:6] = 1
    assert case_hd95(label.clone(), label, (1.0, 1.0, 1.0)) == (0.0, 0.0, 0.0)


def test_95th_percentile_ignores_a_few_outlying_voxels() -> None:
    prediction, label = _masks((40, 40, 40))
    label[:, 5:35, 5:35, 5:35] = 1
    prediction.copy_(label)
    prediction[:, 0, 0, 0] = 1  # one stray voxel far from the cube: the plain maximum sees it
    hd95 = case_hd95(prediction, label, (1.0, 1.0, 1.0))
    assert hd95 == (0.0, 0.0, 0.0)


def test_empty_in_both_is_zero_and_empty_in_one_is_the_diagonal() -> None:
    prediction, label = _masks((12, 10, 8))
    label[1, 4, 4, 4] = 1  # WT: truth only
    prediction[2, 4, 4, 4] = 1  # ET: prediction only
    diagonal = math.sqrt(24.0**2 + 10.0**2 + 8.0**2)
    assert worst_distance((12, 10, 8), (2.0, 1.0, 1.0)) == pytest.approx(diagonal)
    assert case_hd95(prediction, label, (2.0, 1.0, 1.0)) == pytest.approx((0.0, diagonal, diagonal))
    assert worst_distance((240, 240, 155), (1.0, 1.0, 1.0)) == pytest.approx(373.13, abs=0.01)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match=r"must both be \[3, D, H, W\], got \[3, 4, 4, 4\] and"):
        case_hd95(torch.zeros((3, 4, 4, 4)), torch.zeros((3, 4, 4, 5)), (1.0, 1.0, 1.0))


def test_mean_distance_per_region_and_overall() -> None:
    assert mean_distance([(1.0, 2.0, 3.0), (3.0, 4.0, 5.0)]) == RegionDistance(
        tc=2.0, wt=3.0, et=4.0, mean=3.0
    )
    with pytest.raises(ValueError, match="at least one case"):
        mean_distance([])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_monai_on_random_blobs(seed: int) -> None:
    generator = torch.Generator().manual_seed(seed)
    noise = torch.rand((2, 3, 1, 20, 18, 16), generator=generator)
    # Smooth noise thresholded: irregular blobs with holes, different in each region.
    blobs = torch.nn.functional.avg_pool3d(noise.flatten(0, 1), 5, stride=1, padding=2) > 0.5
    prediction, label = blobs.reshape(2, 3, 20, 18, 16).float()
    spacing = (1.0, 1.5, 2.0)
    ours = case_hd95(prediction, label, spacing)
    with warnings.catch_warnings():  # MONAI 1.6 warns about its own deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        reference = compute_hausdorff_distance(
            prediction[None], label[None], include_background=True, percentile=95, spacing=spacing
        )
    assert all(0 < value < 30 for value in ours)
    assert ours == pytest.approx(reference[0].tolist(), rel=1e-5)
