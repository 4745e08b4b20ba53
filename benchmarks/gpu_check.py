"""GPU check for a hospital node: one AMP training step, throughput and peak memory, full size.

On a machine with CUDA it builds the paper's SegResNet (init_filters 16, about 4.7 M
parameters), runs one mixed-precision training step at the training ROI (128^3, batch 1)
and checks that the loss and every gradient are finite, then times N steps of the model
alone (volumes/s) and N steps of ``train_local`` on in-memory cases (the node's whole data
path: crops, flips and intensity jitter in numpy, host-to-device copies) with batches built
in the training thread and by the default number of worker threads, and one
sliding-window inference of a BraTS-sized volume (240 x 240 x 160). It prints the numbers
and the peak GPU memory (``torch.cuda.max_memory_allocated``). Without CUDA it says so and
exits 0.

    python -m benchmarks.gpu_check [--steps 20] [--size 128] [--batch 1] [--device cuda]
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence

import numpy as np
import torch
from monai.inferers.utils import sliding_window_inference
from monai.losses.dice import DiceLoss

from services.node.data.cases import Case
from services.node.evaluation import WINDOW_OVERLAP, autocast_context, autocast_dtype
from services.node.training import data_workers, train_local
from shared.model import ModelConfig, build_model, initial_state
from shared.schemas import TrainingPlan

BRATS_SHAPE = (240, 240, 160)
"""A BraTS volume (240 x 240 x 155) padded to a multiple of 8 along every axis."""
GIB = 1024**3


def _batch(
    batch: int, size: int, device: torch.device, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random images [B, 4, S, S, S] and binary labels [B, 3, S, S, S] on `device`."""
    shape = (batch, 4, size, size, size)
    images = torch.randn(shape, generator=generator).to(device)
    labels = (torch.rand((batch, 3, size, size, size), generator=generator) > 0.9).float()
    return images, labels.to(device)


def amp_step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler,
    images: torch.Tensor,
    labels: torch.Tensor,
) -> float:
    """One training step under autocast, as train_local takes it; returns the loss."""
    loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
    optimizer.zero_grad(set_to_none=True)
    with autocast_context(images.device):
        logits = model(images)
    loss = loss_fn(logits.float(), labels)
    scaler.scale(loss).backward()
    scaler.step(optimizer)
    scaler.update()
    return float(loss.item())


def _cases(count: int, shape: tuple[int, int, int], seed: int) -> list[Case]:
    """In-memory cases with a random cube of tumour: image [4, *shape], label [3, *shape]."""
    rng = np.random.default_rng(seed)
    cases = []
    for index in range(count):
        image = rng.standard_normal((4, *shape), dtype=np.float32)
        label = np.zeros((3, *shape), dtype=np.float32)
        corner = [int(rng.integers(0, side - 32)) for side in shape]
        label[
            :, corner[0] : corner[0] + 32, corner[1] : corner[1] + 32, corner[2] : corner[2] + 32
        ] = 1
        cases.append(Case(f"case{index}", image, label))
    return cases


def check(device: torch.device, steps: int, size: int, batch: int) -> dict[str, float]:
    """Run every measurement on `device` (CUDA) and return them by name."""
    torch.backends.cudnn.benchmark = True
    config = ModelConfig()
    model = build_model(config)
    model.load_state_dict(initial_state(config, 0))
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=autocast_dtype(device) == torch.float16)
    generator = torch.Generator().manual_seed(0)
    images, labels = _batch(batch, size, device, generator)
    torch.cuda.reset_peak_memory_stats(device)

    began = time.perf_counter()
    loss = amp_step(model, optimizer, scaler, images, labels)
    torch.cuda.synchronize(device)
    first_step_s = time.perf_counter() - began
    if not math.isfinite(loss):
        raise FloatingPointError(f"the AMP step gave loss {loss}")
    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"the AMP step left non-finite weights in {bad[:3]}")

    for _ in range(3):  # cuDNN autotuning settles on its kernels
        amp_step(model, optimizer, scaler, images, labels)
    torch.cuda.synchronize(device)
    began = time.perf_counter()
    for _ in range(steps):
        amp_step(model, optimizer, scaler, images, labels)
    torch.cuda.synchronize(device)
    model_rate = steps * batch / (time.perf_counter() - began)
    peak_train = torch.cuda.max_memory_allocated(device) / GIB

    cases = _cases(4, (160, 160, 160), seed=0)
    plan = TrainingPlan(max_steps=steps, batch_size=batch, crop_size=(size, size, size))
    pooled = cases * math.ceil(steps * batch / len(cases))
    workers = data_workers(None, device)
    pipeline_rates = {}
    for count in (0, workers):
        pipeline = train_local(model, pooled, plan, device, workers=count)
        pipeline_rates[count] = pipeline.steps * batch / pipeline.seconds

    model.eval()
    volume = torch.randn((1, 4, *BRATS_SHAPE), generator=generator).to(device)
    torch.cuda.synchronize(device)
    began = time.perf_counter()
    with torch.inference_mode(), autocast_context(device):
        sliding_window_inference(volume, (size,) * 3, 1, model, overlap=WINDOW_OVERLAP)
    torch.cuda.synchronize(device)
    return {
        "first_step_s": first_step_s,
        "model_volumes_per_s": model_rate,
        "workers": float(workers),
        "pipeline_volumes_per_s_inline": pipeline_rates[0],
        "pipeline_volumes_per_s": pipeline_rates[workers],
        "inference_s_per_case": time.perf_counter() - began,
        "peak_train_gib": peak_train,
        "peak_gib": torch.cuda.max_memory_allocated(device) / GIB,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--steps", type=int, default=20, help="timed steps (default 20)")
    parser.add_argument("--size", type=int, default=128, help="ROI edge (default 128)")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--device", default="cuda", help="cuda or cuda:N")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch < 1 or args.size < 32 or args.size % 8:
        parser.error("need --steps >= 1, --batch >= 1 and --size a multiple of 8, >= 32")
    if not torch.cuda.is_available():
        print(
            "gpu_check: no CUDA device on this machine (torch.cuda.is_available() is False); "
            "nothing to check."
        )
        return 0
    device = torch.device(args.device)
    name = torch.cuda.get_device_name(device)
    dtype = autocast_dtype(device)
    print(f"{name}, torch {torch.__version__}, CUDA {torch.version.cuda}, autocast {dtype}")
    results = check(device, args.steps, args.size, args.batch)
    print(
        f"one AMP step at {args.size}^3, batch {args.batch}: finite loss and weights "
        f"({results['first_step_s']:.2f} s with autotuning)"
    )
    print(f"model only:      {results['model_volumes_per_s']:.2f} volumes/s")
    print(
        f"train_local:     {results['pipeline_volumes_per_s_inline']:.2f} volumes/s with "
        "batches built in the training thread (crops, flips, jitter, host-to-device copies)"
    )
    print(
        f"train_local:     {results['pipeline_volumes_per_s']:.2f} volumes/s with "
        f"{int(results['workers'])} data worker thread(s) (the node's default here)"
    )
    print(
        f"inference:       {results['inference_s_per_case']:.2f} s per {BRATS_SHAPE} volume "
        f"(sliding window {args.size}^3, overlap {WINDOW_OVERLAP})"
    )
    print(
        f"peak GPU memory: {results['peak_train_gib']:.2f} GiB training, "
        f"{results['peak_gib']:.2f} GiB overall"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
