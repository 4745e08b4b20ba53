"""Local training on a node's cases, and the weight deltas a node ships (Li et al. 2019)."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.losses.dice import DiceLoss

from services.node.data.cases import Case
from services.node.data.crops import Schedule, crop_batches
from services.node.evaluation import (
    autocast_context,
    autocast_dtype,
    spatial_multiple,
    window_size,
)
from shared.errors import ConfigurationError
from shared.schemas import TrainingPlan

__all__ = [
    "MAX_DEFAULT_WORKERS",
    "MAX_WORKERS",
    "TrainResult",
    "apply_delta",
    "data_workers",
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


@dataclass(frozen=True)
class TrainResult:
    """What one call of train_local did; FedAvg weights the node by ``num_samples``."""

    steps: int
    num_samples: int
    mean_loss: float
    seconds: float


MAX_WORKERS = 64
"""Most batch-building threads a node accepts (as FEDSEG_DATA_WORKERS)."""
MAX_DEFAULT_WORKERS = 4
"""Most batch-building threads chosen by default for a GPU (one 128^3 crop: ~40 ms)."""


def data_workers(requested: int | None, device: torch.device) -> int:
    """Threads that build training batches: `requested`, or chosen for `device`.

    The default is 0 on CPU, where the model's own threads already use every core, and on
    CUDA one worker per spare core (one core stays with the training thread), at most
    MAX_DEFAULT_WORKERS.
    """
    if requested is not None:
        if not 0 <= requested <= MAX_WORKERS:
            raise ConfigurationError(
                f"data workers must be between 0 and {MAX_WORKERS}, got {requested}"
            )
        return requested
    if device.type != "cuda":
        return 0
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(0, min(MAX_DEFAULT_WORKERS, (cores or 1) - 1))


def train_local(
    model: torch.nn.Module,
    cases: Sequence[Case],
    plan: TrainingPlan,
    device: torch.device,
    progress: Callable[[int, int, float], None] | None = None,
    *,
    workers: int = 0,
) -> TrainResult:
    """Train `model` in place on `cases` for ``plan.local_epochs`` epochs; it is left on `device`.

    Each step feeds a batch [B, 4, *crop] of foreground-biased random crops to the model,
    which returns logits [B, 3, *crop]; the loss is MONAI's soft Dice on sigmoid outputs and
    the optimiser Adam, as in the public reproduction of Li et al. 2019 (arXiv 1910.00962).
    Batches are built by `workers` threads ahead of the step (0: in this thread; see
    services.node.data.crops), pinned and copied asynchronously on CUDA.
    Every random draw (shuffle, crops, flips, intensity, dropout) is seeded from ``plan.seed``
    and the global RNG is left untouched, so on CPU equal inputs give bit-identical weights
    whatever `workers` is. On CUDA the step runs under autocast with cuDNN autotuning and is
    not bit-reproducible.
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
    schedule = Schedule.build(rng, len(cases), plan)
    on_cuda = device.type == "cuda"

    if on_cuda:
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
    batches = crop_batches(cases, schedule, sizes.pop(), workers=workers, pin_memory=on_cuda)
    fork_devices = [device.index or 0] if on_cuda else []
    # Dropout draws from torch's global generator: fork it and seed it from the plan.
    # closing(): a failed step must not leave worker threads behind.
    with contextlib.closing(batches), torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(rng.integers(2**63)))
        for (host_images, host_labels), batch in zip(batches, schedule.steps, strict=True):
            images = host_images.to(device, non_blocking=on_cuda)
            labels = host_labels.to(device, non_blocking=on_cuda)
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
            used.update(batch)
            if progress is not None:
                progress(len(losses), len(schedule.steps), value)
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
