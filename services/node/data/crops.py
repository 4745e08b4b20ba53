"""Training batches of augmented random crops, built ahead of the GPU by worker threads.

Every random draw of one sample (crop centre, flips, intensity scale and shift) comes from
its own generator, seeded from the plan's seed with the sample's place in the schedule
(``numpy.random.SeedSequence``). A batch is therefore the same bytes whichever thread
builds it and however many workers there are: ``workers=0`` (in the training thread) and
``workers=4`` (four threads building batches ahead, in pinned memory on CUDA) give
bit-identical training on CPU.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Generator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch

from services.node.data.cases import Case
from shared.schemas import TrainingPlan

FOREGROUND_CROP_PROBABILITY = 0.5
"""Share of crops centred on a tumour voxel, as MONAI ``RandCropByPosNegLabel(pos=1, neg=1)``."""
INTENSITY_SCALE = 0.1
"""Image multiplied by 1 + U(-0.1, 0.1), as ``RandScaleIntensity(factors=0.1)`` in the reference."""
INTENSITY_SHIFT = 0.1
"""U(-0.1, 0.1) added to the image, as ``RandShiftIntensity(offsets=0.1)`` in the reference."""
READY_AHEAD = 1
"""Finished batches kept waiting beyond the one per worker in progress: enough to hide a
slow crop, few enough that pinned memory stays small (a 128^3 batch of 4 is ~240 MB)."""
WORKER_THREAD_PREFIX = "fedseg-batches"

Array = npt.NDArray[np.float32]
Crop = tuple[int, int, int]


def _window(
    start: Sequence[int], size: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...], bool]:
    """Slices of a volume of spatial `shape` and of a window of `size` at `start` that
    overlap, and whether part of the window lies outside the volume."""
    src: list[slice] = [slice(None)]
    dst: list[slice] = [slice(None)]
    for first, length, extent in zip(start, size, shape, strict=True):
        lo, hi = max(first, 0), min(first + length, extent)
        src.append(slice(lo, hi))
        dst.append(slice(lo - first, hi - first))
    padded = any(s.stop - s.start != length for s, length in zip(dst[1:], size, strict=True))
    return tuple(src), tuple(dst), padded


def _crop_start(
    rng: np.random.Generator, shape: Sequence[int], size: Crop, tumour: npt.NDArray[np.intp]
) -> list[int]:
    centre: tuple[int, ...] | None = None
    if rng.random() < FOREGROUND_CROP_PROBABILITY and tumour.size:
        flat = tumour[rng.integers(tumour.size)]
        centre = tuple(int(i) for i in np.unravel_index(flat, tuple(shape)))
    start = []
    for axis, (length, extent) in enumerate(zip(size, shape, strict=True)):
        if extent <= length:
            start.append(-((length - extent) // 2))  # centred zero-padding
        elif centre is not None:
            start.append(min(max(centre[axis] - length // 2, 0), extent - length))
        else:
            start.append(int(rng.integers(0, extent - length + 1)))
    return start


def augmented_crop_into(
    case: Case,
    rng: np.random.Generator,
    image_out: Array,
    label_out: Array,
) -> None:
    """Write one foreground-biased random crop with flips and intensity jitter, after the
    public MONAI BraTS reference pipeline, into `image_out` [4, *size] and `label_out`
    [3, *size] (size is their spatial shape).

    Every draw comes from `rng`. The flips are applied by
    writing through flipped views of the outputs, and scale and shift in place, so each
    voxel is copied once and touched once more.
    """
    size = image_out.shape[1:]
    start = _crop_start(rng, case.image.shape[1:], (size[0], size[1], size[2]), case.foreground)
    image, label = image_out, label_out
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            image, label = np.flip(image, axis), np.flip(label, axis)
    scale = np.float32(1.0 + rng.uniform(-INTENSITY_SCALE, INTENSITY_SCALE))
    shift = np.float32(rng.uniform(-INTENSITY_SHIFT, INTENSITY_SHIFT))
    src, dst, padded = _window(start, size, case.image.shape[1:])
    if padded:  # outside the volume: 0, scaled and shifted like the rest
        image_out.fill(shift)
        label_out.fill(0.0)
    np.multiply(case.image[src], scale, out=image[dst])
    image[dst] += shift
    label[dst] = case.label[src]


def augmented_crop(case: Case, size: Crop, rng: np.random.Generator) -> tuple[Array, Array]:
    """augmented_crop_into new arrays: image [4, *size], label [3, *size], contiguous."""
    image = np.empty((case.image.shape[0], *size), dtype=np.float32)
    label = np.empty((case.label.shape[0], *size), dtype=np.float32)
    augmented_crop_into(case, rng, image, label)
    return image, label


@dataclass(frozen=True)
class Schedule:
    """Which cases each optimiser step sees: a fresh seeded shuffle per epoch.

    ``steps[i]`` holds the case indices of step i (at most ``batch_size`` of them);
    ``entropy`` seeds every sample's augmentation together with its (step, slot).
    """

    steps: tuple[tuple[int, ...], ...]
    entropy: int

    @classmethod
    def build(cls, rng: np.random.Generator, num_cases: int, plan: TrainingPlan) -> Schedule:
        """Draw the schedule from `rng`: ``local_epochs`` shuffles, cut at ``max_steps``."""
        per_epoch = steps_per_epoch(num_cases, plan)
        steps: list[tuple[int, ...]] = []
        for _ in range(plan.local_epochs):
            order = rng.permutation(num_cases)
            for step in range(per_epoch):
                batch = order[step * plan.batch_size : (step + 1) * plan.batch_size]
                steps.append(tuple(int(i) for i in batch))
        return cls(steps=tuple(steps), entropy=int(rng.integers(2**63)))

    def sample_rng(self, step: int, slot: int) -> np.random.Generator:
        """The generator of the `slot`-th sample of `step`; independent of every other one."""
        return np.random.default_rng(np.random.SeedSequence((self.entropy, step, slot)))


def steps_per_epoch(num_cases: int, plan: TrainingPlan) -> int:
    """Optimiser steps in one local epoch: one per batch, at most ``plan.max_steps``."""
    steps = math.ceil(num_cases / plan.batch_size)
    return steps if plan.max_steps is None else min(steps, plan.max_steps)


class CropBatches:
    """Builds step i's batch: images [B, 4, *size] and labels [B, 3, *size], float32.

    With `pin_memory` (CUDA) the batch is allocated in page-locked memory, which PyTorch's
    host allocator recycles, so the copy to the GPU can be asynchronous and needs no
    staging copy.
    """

    def __init__(
        self, cases: Sequence[Case], schedule: Schedule, size: Crop, *, pin_memory: bool
    ) -> None:
        self._cases = list(cases)
        self._schedule = schedule
        self._size = size
        self._pin_memory = pin_memory
        for case in self._cases:  # computed once per case, before any worker starts
            _ = case.foreground

    def __len__(self) -> int:
        return len(self._schedule.steps)

    def __getitem__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        members = self._schedule.steps[step]
        first = self._cases[members[0]]
        images = torch.empty(
            (len(members), first.image.shape[0], *self._size), pin_memory=self._pin_memory
        )
        labels = torch.empty(
            (len(members), first.label.shape[0], *self._size), pin_memory=self._pin_memory
        )
        image_array, label_array = images.numpy(), labels.numpy()
        for slot, i in enumerate(members):
            augmented_crop_into(
                self._cases[i],
                self._schedule.sample_rng(step, slot),
                image_array[slot],
                label_array[slot],
            )
        return images, labels


def crop_batches(
    cases: Sequence[Case], schedule: Schedule, size: Crop, *, workers: int, pin_memory: bool
) -> Generator[tuple[torch.Tensor, torch.Tensor], None, None]:
    """Step-ordered batches; with ``workers > 0`` built ahead by that many worker threads.

    At most ``workers + READY_AHEAD`` batches are queued or being built, besides the one
    the caller holds. Threads rather than processes: the work is numpy copies and
    arithmetic, which release the GIL, and a thread shares the cases and hands its batch
    over without the copy through shared memory that a DataLoader worker process needs
    (benchmarks.data_path measures both). The output does not depend on `workers`.
    Closing the generator cancels what is queued and waits for the batches in progress.
    """
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    batches = CropBatches(cases, schedule, size, pin_memory=pin_memory)
    if workers == 0:
        for step in range(len(batches)):
            yield batches[step]
        return
    with ThreadPoolExecutor(workers, thread_name_prefix=WORKER_THREAD_PREFIX) as pool:
        ahead: deque[Future[tuple[torch.Tensor, torch.Tensor]]] = deque()
        queued = 0
        try:
            while ahead or queued < len(batches):
                while queued < len(batches) and len(ahead) < workers + READY_AHEAD:
                    ahead.append(pool.submit(batches.__getitem__, queued))
                    queued += 1
                yield ahead.popleft().result()
        finally:
            for future in ahead:
                future.cancel()
