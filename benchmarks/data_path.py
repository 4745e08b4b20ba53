"""How fast the node builds 128^3 training batches from BraTS-sized cases, with and without
worker threads, against MONAI's dictionary transforms doing the same augmentation.

The cases are in memory as the node keeps them (image float32 [4, 240, 240, 155], label
float32 [3, 240, 240, 155], a tumour of about 100k voxels). fedseg's path is
``services.node.data.crops.crop_batches`` at 0, 1 and 2 workers; the baseline in the same
run is the public MONAI BraTS reference pipeline's random part, ``RandCropByPosNegLabeld``
(pos 1, neg 1, foreground indices precomputed once per case by ``FgBgToIndicesd``, as a
cached pipeline would) then ``RandFlipd`` on each axis, ``RandScaleIntensityd`` and
``RandShiftIntensityd``, in the training process alone. The same batches built by PyTorch
``DataLoader`` worker processes (1 and 2), which hand each batch over through shared memory,
are timed too: the reason the node uses threads; and so are the cases memory-mapped as the
node's case cache keeps them. A GPU running the full-size model
at 128^3 needs only a few batches per second (``benchmarks.gpu_check`` measures that); the
figure that matters is batches per second here against that rate.

    python -m benchmarks.data_path [--batches 24] [--cases 4]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.transforms.compose import Compose
from monai.transforms.croppad.dictionary import RandCropByPosNegLabeld
from monai.transforms.intensity.dictionary import RandScaleIntensityd, RandShiftIntensityd
from monai.transforms.spatial.dictionary import RandFlipd
from monai.transforms.utility.dictionary import FgBgToIndicesd
from torch.utils.data import DataLoader

from services.node.data.cases import Case
from services.node.data.crops import CropBatches, Schedule, crop_batches
from shared.schemas import TrainingPlan

Shape = tuple[int, int, int]
BRATS: Shape = (240, 240, 155)
CROP: Shape = (128, 128, 128)


def brats_sized_cases(count: int, shape: Shape = BRATS, seed: int = 0) -> list[Case]:
    """`count` cases of `shape`, each with a ball of tumour (radius min(shape) / 5.5)."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    radius = min(shape) / 5.5
    cases = []
    for index in range(count):
        centre = np.array([rng.uniform(radius, side - radius) for side in shape], np.float32)
        ball = ((grid - centre[:, None, None, None]) ** 2).sum(axis=0) <= radius**2
        image = rng.standard_normal((4, *shape), dtype=np.float32)
        label = np.repeat(ball[None].astype(np.float32), 3, axis=0)
        cases.append(Case(f"case{index}", image, label))
    return cases


def time_fedseg(
    cases: Sequence[Case], batches: int, workers: int, crop: Shape = CROP
) -> tuple[float, float]:
    """Seconds to the first batch (worker start-up included) and seconds for the next
    `batches`, each batch one crop, built with `workers` workers."""
    plan = TrainingPlan(local_epochs=batches + 1, max_steps=1, crop_size=crop)
    schedule = Schedule.build(np.random.default_rng(0), len(cases), plan)
    began = time.perf_counter()
    first = 0.0
    count = 0
    for images, labels in crop_batches(cases, schedule, crop, workers=workers, pin_memory=False):
        if images.shape != (1, 4, *crop) or labels.shape != (1, 3, *crop):
            raise RuntimeError(f"unexpected batch shapes {images.shape}, {labels.shape}")
        count += 1
        if count == 1:
            first = time.perf_counter() - began
    if count != batches + 1:
        raise RuntimeError(f"expected {batches + 1} batches, built {count}")
    return first, time.perf_counter() - began - first


def time_dataloader(
    cases: Sequence[Case], batches: int, workers: int, crop: Shape = CROP
) -> tuple[float, float]:
    """As time_fedseg, with the batches built by `workers` DataLoader worker processes."""
    plan = TrainingPlan(local_epochs=batches + 1, max_steps=1, crop_size=crop)
    schedule = Schedule.build(np.random.default_rng(0), len(cases), plan)
    dataset = CropBatches(cases, schedule, crop, pin_memory=False)
    loader = DataLoader(dataset, batch_size=None, num_workers=workers)  # type: ignore[arg-type]
    began = time.perf_counter()
    first = 0.0
    for count, (images, _) in enumerate(loader, start=1):
        if images.shape != (1, 4, *crop):
            raise RuntimeError(f"unexpected batch shape {images.shape}")
        if count == 1:
            first = time.perf_counter() - began
    return first, time.perf_counter() - began - first


def memory_mapped(cases: Sequence[Case], folder: Path) -> list[Case]:
    """The same cases as the case cache keeps them: .npy files mapped read-only, uint8 labels
    (services.node.data.cache's format)."""
    mapped = []
    for case in cases:
        np.save(folder / f"{case.case_id}-image.npy", case.image)
        np.save(folder / f"{case.case_id}-label.npy", case.label.astype(np.uint8))
        image = np.load(folder / f"{case.case_id}-image.npy", mmap_mode="r")
        label = np.load(folder / f"{case.case_id}-label.npy", mmap_mode="r")
        mapped.append(Case(case.case_id, image, label, spacing=case.spacing))
    return mapped


def monai_reference(cases: Sequence[Case], crop: Shape = CROP) -> Callable[[int], object]:
    """The reference pipeline's random part over per-case cached inputs: sample(step)."""
    cached = [
        FgBgToIndicesd(keys="label", image_key=None)(
            {"image": torch.from_numpy(c.image), "label": torch.from_numpy(c.label[1:2])}
        )
        for c in cases
    ]
    random_part = Compose(
        [
            RandCropByPosNegLabeld(
                keys=["image", "label"],
                label_key="label",
                spatial_size=crop,
                pos=1,
                neg=1,
                num_samples=1,
                fg_indices_key="label_fg_indices",
                bg_indices_key="label_bg_indices",
            ),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=0),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=1),
            RandFlipd(keys=["image", "label"], prob=0.5, spatial_axis=2),
            RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
            RandShiftIntensityd(keys="image", offsets=0.1, prob=1.0),
        ]
    ).set_random_state(seed=0)

    def sample(step: int) -> object:
        return random_part(dict(cached[step % len(cached)]))

    return sample


def time_monai(cases: Sequence[Case], batches: int, crop: Shape = CROP) -> float:
    sample = monai_reference(cases, crop)
    began = time.perf_counter()
    for step in range(batches):
        sample(step)
    return time.perf_counter() - began


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.data_path", description=__doc__)
    parser.add_argument("--batches", type=int, default=24)
    parser.add_argument("--cases", type=int, default=4)
    parser.add_argument("--shape", type=int, nargs=3, default=BRATS, help="volume D H W")
    parser.add_argument("--crop", type=int, default=CROP[0], help="crop edge")
    args = parser.parse_args(argv)
    shape: Shape = tuple(args.shape)  # type: ignore[assignment]
    crop: Shape = (args.crop, args.crop, args.crop)
    if args.batches < 1 or args.cases < 1 or args.crop < 1 or min(shape) < 8:
        parser.error("--batches, --cases and --crop must be at least 1, --shape at least 8")
    torch.set_num_threads(1)
    cases = brats_sized_cases(args.cases, shape)
    for case in cases:  # the node computes these once per case, at the first round
        _ = case.foreground
    print(f"{args.cases} cases {shape}, {args.batches} batches of one {crop} crop each")
    baseline = time_monai(cases, args.batches, crop)
    print(f"MONAI reference transforms, in process: {args.batches / baseline:6.1f} batches/s")
    for workers in (0, 1, 2):
        first, seconds = time_fedseg(cases, args.batches, workers, crop)
        print(
            f"fedseg crop_batches, {workers} worker(s):  {args.batches / seconds:6.1f} batches/s "
            f"= {baseline / seconds:.2f}x the reference; first batch after {first:.2f} s"
        )
    with tempfile.TemporaryDirectory() as folder:
        mapped = memory_mapped(cases, Path(folder))
        for workers in (0, 2):
            first, seconds = time_fedseg(mapped, args.batches, workers, crop)
            print(
                f"memory-mapped cases, {workers} worker(s): {args.batches / seconds:6.1f} "
                f"batches/s = {baseline / seconds:.2f}x the reference (page cache warm)"
            )
    for workers in (1, 2):
        first, seconds = time_dataloader(cases, args.batches, workers, crop)
        print(
            f"DataLoader, {workers} worker process(es): {args.batches / seconds:6.1f} batches/s "
            f"= {baseline / seconds:.2f}x the reference; first batch after {first:.2f} s"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
