"""95th-percentile Hausdorff distance per tumour region, in millimetres (the BraTS
challenge's second metric beside Dice)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from scipy import ndimage

from shared.schemas import RegionDistance

PERCENTILE = 95.0


def worst_distance(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The volume's diagonal in mm: no two voxels of it are farther apart.

    A region that is empty in exactly one of prediction and ground truth has no distance;
    it scores this, the worst possible (the BraTS challenge's 373.13 mm is the diagonal of
    its 240 x 240 x 155 volume at 1 mm).
    """
    return math.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing, strict=True)))


def _surface(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Voxels of `mask` with a face-neighbour outside it (or on the array's border)."""
    eroded: npt.NDArray[np.bool_] = ndimage.binary_erosion(mask, border_value=0)
    return mask & ~eroded


def _directed(
    source: npt.NDArray[np.bool_], target: npt.NDArray[np.bool_], spacing: Sequence[float]
) -> npt.NDArray[np.float64]:
    """Distance in mm from each surface voxel of `source` to the surface of `target`."""
    to_target: npt.NDArray[np.float64] = ndimage.distance_transform_edt(
        ~_surface(target), sampling=spacing
    )
    return to_target[_surface(source)]


def surface_hd95(
    predicted: npt.NDArray[np.bool_], truth: npt.NDArray[np.bool_], spacing: Sequence[float]
) -> float:
    """Symmetric HD95 in mm between two non-empty masks [D, H, W]: the larger of the two
    directed 95th percentiles of surface-to-surface distances (as MONAI's
    ``compute_hausdorff_distance(percentile=95)``). Both masks are first cut to the box
    around them, which changes no distance: every surface voxel lies inside it."""
    both = predicted | truth
    box = tuple(
        slice(int(np.flatnonzero(both.any(axis=other)).min()),
              int(np.flatnonzero(both.any(axis=other)).max()) + 1)
        for other in ((1, 2), (0, 2), (0, 1))
    )  # fmt: skip
    predicted, truth = predicted[box], truth[box]
    return max(
        float(np.percentile(_directed(predicted, truth, spacing), PERCENTILE)),
        float(np.percentile(_directed(truth, predicted, spacing), PERCENTILE)),
    )


def case_hd95(
    prediction: torch.Tensor, label: torch.Tensor, spacing: Sequence[float]
) -> tuple[float, float, float]:
    """HD95 in mm of each region (TC, WT, ET) of one case.

    prediction and label: binary [3, D, H, W] on any device; spacing: voxel size in mm
    along D, H, W. Distances are Euclidean, between the two masks' surfaces
    (``surface_hd95``). A region empty in both scores 0, a region empty in only one scores
    ``worst_distance``.
    """
    if prediction.shape != label.shape or prediction.ndim != 4 or prediction.shape[0] != 3:
        raise ValueError(
            f"prediction and label must both be [3, D, H, W], got {list(prediction.shape)} "
            f"and {list(label.shape)}"
        )
    worst = worst_distance(label.shape[1:], spacing)
    predictions = prediction.detach().bool().cpu().numpy()
    labels = label.detach().bool().cpu().numpy()
    distances: list[float] = []
    for predicted, truth in zip(predictions, labels, strict=True):
        has_prediction, has_truth = bool(predicted.any()), bool(truth.any())
        if not has_prediction and not has_truth:
            distances.append(0.0)
        elif not (has_prediction and has_truth):
            distances.append(worst)
        else:
            distances.append(surface_hd95(predicted, truth, spacing))
    return distances[0], distances[1], distances[2]


def mean_distance(per_case: Sequence[tuple[float, float, float]]) -> RegionDistance:
    """Mean over cases of each region's distance, and the mean of the three regions."""
    if not per_case:
        raise ValueError("mean_distance needs at least one case, got none")
    n = len(per_case)
    tc, wt, et = (sum(case[region] for case in per_case) / n for region in range(3))
    if not all(math.isfinite(v) for v in (tc, wt, et)):
        raise ValueError(f"HD95 is not finite (TC {tc}, WT {wt}, ET {et})")
    return RegionDistance(tc=tc, wt=wt, et=et, mean=(tc + wt + et) / 3.0)
