"""Local training on a node's cases, and the weight deltas a node ships (Li et al. 2019)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from monai.losses.dice import DiceLoss

from services.node.data.cases import Case
from services.node.evaluation import (
    autocast_context,
    autocast_dtype,
    evaluate,
    spatial_multiple,
    window_size,
)
from shared.errors import ConfigurationError
from shared.schemas import TrainingPlan

FOREGROUND_CROP_PROBABILITY = 0.5
"""Share of crops centred on a tumour voxel, as MONAI ``RandCropByPosNegLabel(pos=1, neg=1)``."""
INTENSITY_SCALE = 0.1
"""Image multiplied by 1 + U(-0.1, 0.1), as ``RandScaleIntensity(factors=0.1)`` in the reference."""
INTENSITY_SHIFT = 0.1
"""U(-0.1, 0.1) added to the image, as ``RandShiftIntensity(offsets=0.1)`` in the reference."""

Array = npt.NDArray[np.float32]

__all__ = [
    "TrainResult",
    "apply_delta",
    "evaluate",
    "extract_window",
    "select_device",
    "train_local",
    "weight_delta",
]


def select_device(preference: str = "auto") -> torch.device:
    """Resolve "auto", "cpu", "cuda" or "cuda:N" to a device this machine has."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(preference)
    except RuntimeError as exc:
        raise ConfigurationError(
            f'device must be "auto", "cpu", "cuda" or "cuda:N", got {preference!r}'
        ) from exc
    if device.type == "cpu" and device.index is None:
        return device
    if device.type != "cuda":
        raise ConfigurationError(
            f'device must be "auto", "cpu", "cuda" or "cuda:N", got {preference!r}'
        )
    if not torch.cuda.is_available():
        raise ConfigurationError(f"device {preference!r} was requested but CUDA is not available")
    if device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigurationError(
            f"device {preference!r} was requested but only "
            f"{torch.cuda.device_count()} CUDA device(s) are visible"
        )
    return device


def extract_window(volume: Array, start: Sequence[int], size: Sequence[int]) -> Array:
    """Copy [C, *size] from `volume` [C, D, H, W] at `start`; parts outside the volume are 0."""
    out = np.zeros((volume.shape[0], *size), dtype=np.float32)
    src: list[slice] = [slice(None)]
    dst: list[slice] = [slice(None)]
    for first, length, extent in zip(start, size, volume.shape[1:], strict=True):
        lo, hi = max(first, 0), min(first + length, extent)
        src.append(slice(lo, hi))
        dst.append(slice(lo - first, hi - first))
    out[tuple(dst)] = volume[tuple(src)]
    return out


class _CropSampler:
    """Seeded, foreground-biased random crops with flips and intensity jitter, after the
    public MONAI BraTS reference pipeline. Every draw comes from one numpy Generator."""

    def __init__(self, rng: np.random.Generator, size: tuple[int, int, int]) -> None:
        self._rng = rng
        self._size = size
        self._foreground: dict[str, npt.NDArray[np.intp]] = {}

    def _start(self, case: Case) -> list[int]:
        shape = case.image.shape[1:]
        centre: tuple[int, ...] | None = None
        if self._rng.random() < FOREGROUND_CROP_PROBABILITY:
            if case.case_id not in self._foreground:
                # Any region marks tumour; WT contains TC and ET.
                self._foreground[case.case_id] = np.flatnonzero(case.label.any(axis=0))
            voxels = self._foreground[case.case_id]
            if voxels.size:
                flat = voxels[self._rng.integers(voxels.size)]
                centre = tuple(int(i) for i in np.unravel_index(flat, shape))
        start = []
        for axis, (length, extent) in enumerate(zip(self._size, shape, strict=True)):
            if extent <= length:
                start.append(-((length - extent) // 2))  # centred zero-padding
            elif centre is not None:
                start.append(min(max(centre[axis] - length // 2, 0), extent - length))
            else:
                start.append(int(self._rng.integers(0, extent - length + 1)))
        return start

    def sample(self, case: Case) -> tuple[Array, Array]:
        """One augmented crop: image [4, *size], label [3, *size]."""
        start = self._start(case)
        image = extract_window(case.image, start, self._size)
        label = extract_window(case.label, start, self._size)
        for axis in (1, 2, 3):
            if self._rng.random() < 0.5:
                image, label = np.flip(image, axis), np.flip(label, axis)
        scale = 1.0 + self._rng.uniform(-INTENSITY_SCALE, INTENSITY_SCALE)
        shift = self._rng.uniform(-INTENSITY_SHIFT, INTENSITY_SHIFT)
        image = (image * np.float32(scale) + np.float32(shift)).astype(np.float32)
        return image, np.ascontiguousarray(label)


@dataclass(frozen=True)
class TrainResult:
    """What one call of train_local did; FedAvg weights the node by ``num_samples``."""

    steps: int
    num_samples: int
    mean_loss: float
    seconds: float


def _batches(
    rng: np.random.Generator, num_cases: int, plan: TrainingPlan
) -> Iterator[npt.NDArray[np.intp]]:
    """Case indices of each step: a fresh seeded shuffle per epoch, cut at ``max_steps``."""
    per_epoch = _steps_per_epoch(num_cases, plan)
    for _ in range(plan.local_epochs):
        order = rng.permutation(num_cases)
        for step in range(per_epoch):
            yield order[step * plan.batch_size : (step + 1) * plan.batch_size]


def _steps_per_epoch(num_cases: int, plan: TrainingPlan) -> int:
    steps = math.ceil(num_cases / plan.batch_size)
    return steps if plan.max_steps is None else min(steps, plan.max_steps)


def train_local(
    model: torch.nn.Module,
    cases: Sequence[Case],
    plan: TrainingPlan,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
) -> TrainResult:
    """Train `model` in place on `cases` for ``plan.local_epochs`` epochs; it is left on `device`.

    Each step feeds a batch [B, 4, *crop] of foreground-biased random crops to the model,
    which returns logits [B, 3, *crop]; the loss is MONAI's soft Dice on sigmoid outputs and
    the optimiser Adam, as in the public reproduction of Li et al. 2019 (arXiv 1910.00962).
    Every random draw (shuffle, crops, flips, intensity, dropout) is seeded from ``plan.seed``
    and the global RNG is left untouched, so on CPU equal inputs give bit-identical weights.
    On CUDA the step runs under autocast with cuDNN autotuning and is not bit-reproducible.
    ``progress(step, total_steps, loss)`` is called after every step, ``step`` from 1.
    """
    if not cases:
        raise ValueError("train_local needs at least one case, got none")
    rng = np.random.default_rng(plan.seed)
    multiple = spatial_multiple(model)
    sizes = {window_size(plan.crop_size, case.image.shape[1:], multiple) for case in cases}
    if len(sizes) != 1:
        raise ValueError(
            f"crop_size {list(plan.crop_size)} gives different crop sizes {sorted(sizes)} for "
            "cases of different shapes; use a crop no larger than the smallest volume"
        )
    sampler = _CropSampler(rng, sizes.pop())
    total_steps = plan.local_epochs * _steps_per_epoch(len(cases), plan)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    amp_dtype = autocast_dtype(device)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)

    used: set[int] = set()
    losses: list[float] = []
    began = time.perf_counter()
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    # Dropout draws from torch's global generator: fork it and seed it from the plan.
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(rng.integers(2**63)))
        for batch in _batches(rng, len(cases), plan):
            crops = [sampler.sample(cases[i]) for i in batch]
            images = torch.from_numpy(np.stack([c[0] for c in crops])).to(device)
            labels = torch.from_numpy(np.stack([c[1] for c in crops])).to(device)
            optimizer.zero_grad(set_to_none=True)
            with autocast_context(device):
                logits = model(images)
            # The loss sums squared probabilities over the crop: float16 would overflow.
            loss = loss_fn(logits.float(), labels)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            value = float(loss.item())
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"training loss became {value} at step {len(losses) + 1}; "
                    "lower the learning rate"
                )
            losses.append(value)
            used.update(int(i) for i in batch)
            if progress is not None:
                progress(len(losses), total_steps, value)
    return TrainResult(
        steps=len(losses),
        num_samples=len(used),
        mean_loss=sum(losses) / len(losses),
        seconds=time.perf_counter() - began,
    )


def _check_keys(left: Mapping[str, object], right: Mapping[str, object], what: str) -> None:
    if left.keys() != right.keys():
        only_left = sorted(set(left) - set(right))
        only_right = sorted(set(right) - set(left))
        raise ValueError(
            f"{what} must have the same keys; only in the first: {only_left}, "
            f"only in the second: {only_right}"
        )


def weight_delta(
    trained: Mapping[str, torch.Tensor], base: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """``trained - base`` for every floating-point entry, as float32, CPU, contiguous.

    Non-float entries (e.g. a BatchNorm step counter) are not weights and are left out;
    apply_delta carries them over from the base.
    """
    _check_keys(trained, base, "trained and base state dicts")
    delta: dict[str, torch.Tensor] = {}
    for key, before in base.items():
        after = trained[key]
        if after.shape != before.shape:
            raise ValueError(
                f"{key} has shape {list(after.shape)} after training but {list(before.shape)} "
                "in the base"
            )
        if before.is_floating_point():
            diff = after.detach().float().cpu() - before.detach().float().cpu()
            delta[key] = diff.contiguous()
    return delta


def apply_delta(
    base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor], scale: float = 1.0
) -> dict[str, torch.Tensor]:
    """``base + scale * delta`` in the base's dtypes, CPU, contiguous.

    `delta` must hold exactly the floating-point entries of `base`, as weight_delta returns;
    the other entries of `base` are copied unchanged.
    """
    floats = {key: t for key, t in base.items() if t.is_floating_point()}
    _check_keys(floats, delta, "the float entries of base and the delta")
    result: dict[str, torch.Tensor] = {}
    for key, before in base.items():
        if key not in delta:
            result[key] = before.detach().cpu().clone().contiguous()
            continue
        step = delta[key]
        if step.shape != before.shape:
            raise ValueError(
                f"{key} has shape {list(step.shape)} in the delta but {list(before.shape)} "
                "in the base"
            )
        total = before.detach().float().cpu() + scale * step.detach().float().cpu()
        result[key] = total.to(before.dtype).contiguous()
    return result
