"""Segmentation quality of centralised training, FedAvg and FedAvg under each privacy mechanism.

Two suites, each a cohort with its own settings (benchmarks.quality.config):

- ``update``: 40 cases over 4 sites; centralised, FedAvg, partial sharing, and the
  update-level mechanisms (SVT, Gaussian), whose epsilon protects a node's whole update
  and is stated per round (the total composes over the rounds).
- ``aggregation``: the update suite's cohort without DP, under FedAvg, FedAdam and the
  robust strategies: how many rounds each needs to reach FedAvg's final Dice.
- ``patient``: 320 cases over 4 sites (53 to 75 training patients each); centralised,
  FedAvg and patient-level DP-SGD at whole-run epsilon 1, 3, 8 and 30 (delta 1e-5):
  there epsilon protects one patient over the whole run.

Every setting of a suite trains the same SegResNet from the same seeded initial model on
the same synthetic cohort (benchmarks.cohort: uneven sites, per-site scanners) and is
scored on the same held-out validation split of every site. The centralised baseline
trains on the pooled training cases as long as the federation does (``pooled_plan``: the
same epochs and optimiser steps). Federated settings run the real aggregator app
in-process (starlette's TestClient, each holder presenting its certificate) with one real
``NodeRunner`` per site and its own privacy ledger, so updates go through DP-SGD or the
privacy filters, safetensors, the upload checks and FedAvg as in a deployment. Under DP
the nodes withhold their Dice, so the benchmark downloads every round's global model and
scores it itself (benchmarks.quality.scoring).

Each suite writes ``results.csv`` (a row per setting, with its unit of privacy),
``rounds.csv`` (Dice of the global model after every round) and ``quality.png`` (final
Dice against the epsilon spent; Dice per round): the update suite into ``--out``, the
patient suite into ``--out``/patient. Each prints its table with every setting's ratio to
centralised (FedAvg target: at least 0.98) and to FedAvg (DP-SGD at epsilon 8: at least
0.9).

    python -m benchmarks.quality [--suite all|update|patient] [--tiny]
        [--out var/bench-quality] [--device auto]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from benchmarks.quality.centralised import run_centralised
from benchmarks.quality.config import (
    QualityConfig,
    aggregation_config,
    full_config,
    patient_config,
    tiny_aggregation_config,
    tiny_config,
    tiny_patient_config,
)
from benchmarks.quality.federated import InProcessFederation
from benchmarks.quality.report import (
    UNITS_NOTE,
    dpsgd_verdict,
    fedadam_verdict,
    fedavg_verdict,
    plot,
    table,
    write_csv,
)
from benchmarks.quality.results import SettingResult
from benchmarks.quality.sites import load_sites
from services.node.training import select_device

SUITES: dict[str, tuple[Callable[[], QualityConfig], Callable[[], QualityConfig], str]] = {
    "update": (full_config, tiny_config, ""),
    "patient": (patient_config, tiny_patient_config, "patient"),
    "aggregation": (aggregation_config, tiny_aggregation_config, "aggregation"),
}
"""Suite name: (full config, tiny config, output subfolder of --out)."""


def only(config: QualityConfig, names: Sequence[str]) -> QualityConfig:
    """``config`` with just the settings named; exits naming an unknown one."""
    known = [s.name for s in config.settings]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"--only: no setting {unknown[0]!r} in this suite; it has {known}")
    return dataclasses.replace(
        config, settings=tuple(s for s in config.settings if s.name in names)
    )


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


def run_suite(config: QualityConfig, out: Path, device: torch.device) -> None:
    """Run one suite into ``out`` and print its table and verdicts."""
    out.mkdir(parents=True, exist_ok=True)
    print(f"== {config.title} ==", flush=True)
    began = time.perf_counter()
    results = run_all(config, out, device)
    write_csv(results, config, out)
    png = plot(results, out, config.title)
    print(f"\n{config.title}")
    print(table(results))
    print(UNITS_NOTE)
    print(f"\n{fedavg_verdict(results)}")
    for verdict in (dpsgd_verdict(results), fedadam_verdict(results)):
        if verdict is not None:
            print(verdict)
    print(f"{config.rounds} rounds, {device}, {time.perf_counter() - began:.0f} s in all")
    print(f"wrote {out / 'results.csv'}, {out / 'rounds.csv'} and {png}\n", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.quality",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--suite", choices=("all", *SUITES), default="all", help="which suite to run"
    )
    parser.add_argument("--tiny", action="store_true", help="the seconds-long test version")
    parser.add_argument(
        "--only", nargs="+", metavar="SETTING", help="run only these settings (by name)"
    )
    parser.add_argument("--out", type=Path, default=Path("var/bench-quality"))
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    device = select_device(args.device)
    for name, (full, tiny, folder) in SUITES.items():
        if args.suite in ("all", name):
            config = tiny() if args.tiny else full()
            if args.only:
                config = only(config, args.only)
            run_suite(config, args.out / folder, device)
    return 0
