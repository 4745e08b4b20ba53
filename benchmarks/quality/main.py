"""Segmentation quality of centralised training, FedAvg and FedAvg under each privacy mechanism.

Every setting trains the same SegResNet from the same seeded initial model on the same
synthetic cohort (benchmarks.cohort: uneven sites, per-site scanners) and is scored on the
same held-out validation split of every site. The centralised baseline trains on the pooled
training cases as long as the federation does (``pooled_plan``: the same epochs and, at
batch 1, the same optimiser steps). Federated settings run the real aggregator app
in-process (starlette's TestClient, each holder presenting its certificate) with one real
``NodeRunner`` per site, so updates go through the privacy filters, safetensors, the upload
checks and FedAvg as in a deployment, and every Dice comes back from the nodes as a metric.

Writes ``results.csv`` (a row per setting), ``rounds.csv`` (Dice of the global model after
every round) and ``quality.png`` (final Dice against the epsilon spent; Dice per round), and
prints the table with each setting's ratio to centralised (FedAvg target: at least 0.98).

    python -m benchmarks.quality [--tiny] [--out var/bench-quality] [--device auto]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from benchmarks.quality.centralised import run_centralised
from benchmarks.quality.config import QualityConfig, full_config, tiny_config
from benchmarks.quality.federated import InProcessFederation
from benchmarks.quality.report import fedavg_verdict, plot, table, write_csv
from benchmarks.quality.results import SettingResult
from benchmarks.quality.sites import load_sites
from services.node.training import select_device


def run_all(config: QualityConfig, out: Path, device: torch.device) -> list[SettingResult]:
    """Run every setting of `config` in order on the cohort under ``out/cohort``."""
    began = time.perf_counter()
    sites = load_sites(config, out / "cohort")
    print(
        f"cohort: {sum(len(s.train) + len(s.val) for s in sites)} cases of "
        f"{config.cohort.volume}^3 over {len(sites)} sites; training cases "
        f"{[len(s.train) for s in sites]}, validation {[len(s.val) for s in sites]} "
        f"(ready in {time.perf_counter() - began:.1f} s)",
        flush=True,
    )
    work = out / "runs"
    shutil.rmtree(work, ignore_errors=True)
    federation = InProcessFederation(work, [site.name for site in sites])
    results = []
    for setting in config.settings:
        if setting.policy is None:
            results.append(run_centralised(setting, config, sites, device))
        else:
            results.append(federation.run(setting, config, sites, device))
        print(f"{setting.name}: done in {results[-1].seconds:.0f} s", flush=True)
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--tiny", action="store_true", help="the seconds-long test version")
    parser.add_argument("--out", type=Path, default=Path("var/bench-quality"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    config = tiny_config() if args.tiny else full_config()
    device = select_device(args.device)
    args.out.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    results = run_all(config, args.out, device)
    write_csv(results, config, args.out)
    png = plot(results, args.out)
    print()
    print(table(results))
    print(
        f"\n{fedavg_verdict(results)}; {config.rounds} rounds, {device}, "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'rounds.csv'} and {png}")
    return 0
