"""`fedseg-centralised`: the baseline, one SegResNet trained on every site's training cases pooled.

Give it the sites' data folders (BraTS or Decathlon layout) and the federation's settings;
each site is split into training and validation exactly as its node splits it, the model
trains on the pooled training cases as long as R federated rounds would (the same epochs,
the same optimiser steps with batch 1, see ``pooled_plan``) and is scored on the pooled
validation cases after every round's share of steps.

    fedseg-centralised --data-dir var/demo/data/site-1 --data-dir var/demo/data/site-2 \\
        --rounds 20 --max-steps 8 --lr 2e-3 --crop 32 --init-filters 8
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pydantic

from services.centralised.training import train_centralised
from services.node.data.layout import load_local_split
from services.node.progress import ProgressBar
from services.node.training import data_workers, select_device
from shared.errors import FedsegError
from shared.model import ModelConfig
from shared.schemas import RegionDice, TrainingPlan
from shared.tensors import to_bytes


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="fedseg-centralised",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        required=True,
        help="one site's data folder (repeat per site)",
    )
    parser.add_argument("--rounds", type=int, required=True, help="federated rounds to match")
    parser.add_argument("--local-epochs", type=int, default=1)
    parser.add_argument("--max-steps", type=int, default=None, help="per site and epoch")
    parser.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--crop", type=int, default=128, help="training crop and ROI edge")
    parser.add_argument("--init-filters", type=int, default=16, help="SegResNet width")
    parser.add_argument("--val-fraction", type=float, default=0.2, help="as FEDSEG_VAL_FRACTION")
    parser.add_argument("--split-seed", type=int, default=0, help="as FEDSEG_SPLIT_SEED")
    parser.add_argument("--seed", type=int, default=0, help="the run seed (initial model, crops)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--workers", type=int, default=None, help="threads building batches (FEDSEG_DATA_WORKERS)"
    )
    parser.add_argument("--save", type=Path, default=None, help="write the model (safetensors)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def format_dice(dice: RegionDice) -> str:
    return f"TC {dice.tc:.3f}  WT {dice.wt:.3f}  ET {dice.et:.3f}  mean {dice.mean:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        model_config = ModelConfig(init_filters=args.init_filters)
        plan = TrainingPlan(
            local_epochs=args.local_epochs,
            max_steps=args.max_steps,
            learning_rate=args.lr,
            batch_size=args.batch_size,
            crop_size=(args.crop, args.crop, args.crop),
            seed=args.seed,
        )
        device = select_device(args.device)
        workers = data_workers(args.workers, device)
        sites, val = [], []
        for folder in args.data_dir:
            train_cases, val_cases = load_local_split(folder, args.val_fraction, args.split_seed)
            print(f"{folder}: {len(train_cases)} training, {len(val_cases)} validation cases")
            sites.append(train_cases)
            val.extend(val_cases)
    except (FedsegError, ValueError, pydantic.ValidationError) as error:
        print(f"fedseg-centralised: {error}", file=sys.stderr)
        return 2
    if not val:
        print("fedseg-centralised: no validation cases; Dice is not measured", file=sys.stderr)
    progress = None if args.quiet else ProgressBar("centralised")
    try:
        result = train_centralised(
            model_config,
            plan,
            args.rounds,
            sites,
            val,
            device,
            seed=args.seed,
            progress=progress,
            workers=workers,
            on_round=lambda number, dice: print(f"round {number:>4}  {format_dice(dice)}"),
        )
    except ValueError as error:
        print(f"fedseg-centralised: {error}", file=sys.stderr)
        return 2
    print(
        f"trained {result.steps} steps on {sum(map(len, sites))} pooled cases in "
        f"{result.seconds:.1f} s (mean loss {result.mean_loss:.4f})"
    )
    if result.dice:
        print(f"final Dice on {len(val)} validation cases: {format_dice(result.dice[-1])}")
    if args.save is not None:
        args.save.parent.mkdir(parents=True, exist_ok=True)
        args.save.write_bytes(to_bytes(result.state))
        print(f"model written to {args.save}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
