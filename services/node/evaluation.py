"""Validation Dice (and optionally HD95) per tumour region by sliding-window inference, as in
Li et al. 2019."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.inferers.utils import sliding_window_inference
from monai.metrics.meandice import DiceMetric

from services.node.data.cases import Case
from services.node.hd95 import case_hd95, mean_distance
from shared.schemas import RegionDice, RegionDistance

WINDOW_OVERLAP = 0.5
"""Overlap of neighbouring sliding windows, as in the public MONAI BraTS reference."""


def autocast_dtype(device: torch.device) -> torch.dtype | None:
    """Mixed-precision dtype on CUDA (bfloat16 where supported, else float16); None on CPU."""
    if device.type != "cuda":
        return None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


def autocast_context(device: torch.device) -> contextlib.AbstractContextManager[object]:
    """torch.autocast on CUDA; a no-op on CPU, which runs in full float32."""
    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type="cuda", dtype=dtype)


def spatial_multiple(model: torch.nn.Module) -> int:
    """Every spatial size fed to a SegResNet must be a multiple of this; 1 for other models."""
    blocks_down = getattr(model, "blocks_down", None)
    if isinstance(blocks_down, tuple | list) and blocks_down:
        return int(2 ** (len(blocks_down) - 1))
    return 1


def window_size(
    requested: Sequence[int], volume: Sequence[int], multiple: int
) -> tuple[int, int, int]:
    """The crop or ROI actually used: the request, clamped to the volume rounded up to `multiple`.

    A volume smaller than the result along an axis is zero-padded to it; the result must be a
    multiple of `multiple` so that SegResNet's skip connections line up.
    """
    size = tuple(
        min(r, -(-v // multiple) * multiple) for r, v in zip(requested, volume, strict=True)
    )
    if any(s % multiple for s in size):
        raise ValueError(
            f"crop/ROI size must be a multiple of {multiple} along every axis for this model, "
            f"got {list(size)} (requested {list(requested)}, volume {list(volume)})"
        )
    return (size[0], size[1], size[2])


@dataclass(frozen=True)
class Validation:
    """What validation measured: Dice always, HD95 in mm when asked for."""

    dice: RegionDice
    hd95: RegionDistance | None


def validate(
    model: torch.nn.Module,
    cases: Sequence[Case],
    roi_size: tuple[int, int, int],
    device: torch.device,
    *,
    hd95: bool = False,
) -> Validation:
    """Mean Dice over `cases` of each region (TC, WT, ET) and the mean of the three; with
    `hd95`, also their mean 95th-percentile Hausdorff distance in mm (services.node.hd95).

    Each image [1, 4, D, H, W] is segmented by sliding windows of `roi_size` (clamped to the
    volume) into logits [1, 3, D, H, W], thresholded at sigmoid > 0.5 and scored per channel
    with MONAI's DiceMetric. A region whose ground truth is empty scores 1.0 when the
    prediction is empty too and 0.0 otherwise (``ignore_empty=False``), so a case never
    yields NaN and every case counts. The model is left on `device` in its former mode.
    """
    if not cases:
        raise ValueError("validation needs at least one case, got none")
    multiple = spatial_multiple(model)
    metric = DiceMetric(include_background=True, reduction="mean_batch", ignore_empty=False)
    distances: list[tuple[float, float, float]] = []
    was_training = model.training
    model.to(device)
    model.eval()
    try:
        with torch.inference_mode():
            for case in cases:
                # Copies: a cached case is a read-only memory map, its label uint8.
                image = torch.tensor(np.asarray(case.image), dtype=torch.float32)[None]
                label = torch.tensor(np.asarray(case.label), dtype=torch.float32)[None]
                image, label = image.to(device), label.to(device)
                roi = window_size(roi_size, case.image.shape[1:], multiple)
                with autocast_context(device):
                    logits = sliding_window_inference(
                        image, roi, sw_batch_size=1, predictor=model, overlap=WINDOW_OVERLAP
                    )
                if not isinstance(logits, torch.Tensor):
                    raise TypeError(f"model must return one tensor, got {type(logits).__name__}")
                prediction = (torch.sigmoid(logits.float()) > 0.5).float()
                metric(y_pred=prediction, y=label)
                if hd95:
                    distances.append(case_hd95(prediction[0], label[0], case.spacing))
            scores = metric.aggregate()
    finally:
        model.train(was_training)
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"DiceMetric returned {type(scores).__name__}, expected a tensor")
    tc, wt, et = (float(v) for v in scores.cpu().tolist())
    if not all(math.isfinite(v) for v in (tc, wt, et)):
        raise ValueError(f"Dice is not finite (TC {tc}, WT {wt}, ET {et})")
    dice = RegionDice(tc=tc, wt=wt, et=et, mean=(tc + wt + et) / 3.0)
    return Validation(dice=dice, hd95=mean_distance(distances) if hd95 else None)


def evaluate(
    model: torch.nn.Module,
    cases: Sequence[Case],
    roi_size: tuple[int, int, int],
    device: torch.device,
) -> RegionDice:
    """Mean Dice per region and their mean: ``validate(...).dice`` without HD95."""
    return validate(model, cases, roi_size, device).dice
