"""Seconds and peak memory of one patient-level DP-SGD step against one train_local step, CPU.

At the demo's size (services.demo.main defaults: SegResNet init_filters 8, 32^3 crops of 48^3
synthetic volumes, 18 cases over 3 nodes, so 6 per node). The baseline in the same run is
the non-private ``services.node.training.train_local`` at batch 2; the DP-SGD step
(``services.node.dpsgd_training.train_local_dpsgd``) samples each of the 6 patients with
q = 1/3, so 2 patients per step on average, computes their gradients one per patient with
torch.func.vmap, clips, sums and adds noise. Each mode runs in a fresh process after
WARMUP untimed steps, so its peak RSS is its own high-water mark; "extra" is that peak less
the process's RSS once cases and model are built.

    python -m benchmarks.dpsgd_step [--steps 24] [--cases 6] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from collections.abc import Sequence

import psutil
import torch

from benchmarks.data_path import brats_sized_cases
from services.node.dpsgd_training import DpSgdSettings, train_local_dpsgd
from services.node.training import train_local
from shared.model import ModelConfig, build_model, initial_state
from shared.privacy.dpsgd import poisson_sample
from shared.schemas import TrainingPlan

CONFIG = ModelConfig(init_filters=8)
VOLUME = 48
CROP = 32
BATCH = 2
CPU = torch.device("cpu")
WARMUP = 4
"""Untimed steps first: the first few CPU steps at a new shape are several times slower."""


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _rss_mib() -> float:
    return float(psutil.Process().memory_info().rss) / 2**20


def child(mode: str, steps: int, cases_count: int, threads: int) -> dict[str, float | str]:
    """Time `steps` steps of `mode` ("dpsgd" or "plain") after WARMUP warm-up steps."""
    torch.set_num_threads(threads)
    cases = brats_sized_cases(cases_count, (VOLUME, VOLUME, VOLUME))
    for case in cases:
        _ = case.foreground
    model = build_model(CONFIG)
    model.load_state_dict(initial_state(CONFIG, 0))
    baseline = _rss_mib()
    crop = (CROP, CROP, CROP)
    if mode == "plain":
        # local_epochs steps of one full batch each (max_steps 1 per epoch).
        plan = TrainingPlan(local_epochs=WARMUP, max_steps=1, batch_size=BATCH, crop_size=crop)
        train_local(model, cases, plan, CPU)
        result = train_local(model, cases, plan.model_copy(update={"local_epochs": steps}), CPU)
        sampled = result.steps * BATCH
    else:
        rate = BATCH / cases_count
        plan = TrainingPlan(max_steps=steps, batch_size=BATCH, crop_size=crop)
        for count, seed in ((WARMUP, 0), (steps, 1)):
            settings = DpSgdSettings(rate, 1.0, 1.0, steps=count, normaliser=BATCH)
            result = train_local_dpsgd(
                model, cases, plan, settings, CPU,
                sampling=torch.Generator().manual_seed(seed),
                noise=torch.Generator().manual_seed(seed),
            )  # fmt: skip
        replay = torch.Generator().manual_seed(1)  # the patients each timed step sampled
        sampled = sum(poisson_sample(cases_count, rate, replay).numel() for _ in range(steps))
    return {
        "mode": mode,
        "seconds_per_step": result.seconds / result.steps,
        "patients_per_step": sampled / result.steps,
        "baseline_mib": baseline,
        "peak_mib": _peak_mib(),
        "threads": torch.get_num_threads(),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.dpsgd_step", description=__doc__)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per mode")
    parser.add_argument("--cases", type=int, default=6, help="patients at the node")
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: stable on a busy host)"
    )
    parser.add_argument("--child", choices=["plain", "dpsgd"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps < 1 or args.cases < BATCH or args.threads < 1:
        parser.error(f"--steps and --threads must be at least 1, --cases at least {BATCH}")
    if args.child:
        print(json.dumps(child(args.child, args.steps, args.cases, args.threads)))
        return 0
    results = {}
    for mode in ("plain", "dpsgd"):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.dpsgd_step", "--child", mode,
             "--steps", str(args.steps), "--cases", str(args.cases),
             "--threads", str(args.threads)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    plain, private = results["plain"], results["dpsgd"]
    print(
        f"SegResNet init_filters {CONFIG.init_filters}, {args.cases} cases of {VOLUME}^3, "
        f"{CROP}^3 crops, {args.steps} timed steps, {plain['threads']} torch threads, CPU"
    )
    print(f"{'':<28}{'s/step':>8}{'patients/step':>15}{'peak RSS MiB':>14}{'extra MiB':>11}")
    for name, row in (("train_local, batch 2", plain), ("DP-SGD, q = 2 / cases", private)):
        extra = row["peak_mib"] - row["baseline_mib"]
        print(
            f"{name:<28}{row['seconds_per_step']:>8.3f}{row['patients_per_step']:>15.2f}"
            f"{row['peak_mib']:>14.0f}{extra:>11.0f}"
        )
    per_patient = (private["seconds_per_step"] / max(private["patients_per_step"], 1e-9)) / (
        plain["seconds_per_step"] / plain["patients_per_step"]
    )
    time_ratio = private["seconds_per_step"] / plain["seconds_per_step"]
    extra_ratio = (private["peak_mib"] - private["baseline_mib"]) / max(
        plain["peak_mib"] - plain["baseline_mib"], 1e-9
    )
    print(
        f"\nDP-SGD / train_local: {time_ratio:.2f}x the seconds per step "
        f"({per_patient:.2f}x per patient), {private['peak_mib'] / plain['peak_mib']:.2f}x the "
        f"peak RSS ({extra_ratio:.2f}x the extra memory)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
