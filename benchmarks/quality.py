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
import csv
import shutil
import ssl
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import torch
from starlette.types import ASGIApp

from benchmarks.cohort import CohortConfig, write_cohort
from services.aggregator.api.main import create_app
from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.config import AggregatorSettings
from services.aggregator.core.db import make_engine
from services.aggregator.core.security import _WithPeerCertificate, tls_extension
from services.aggregator.federation import Federation
from services.centralised.training import steps_per_epoch, train_centralised
from services.node.client import AggregatorClient
from services.node.data.cases import Case
from services.node.data.layout import load_local_split
from services.node.evaluation import evaluate
from services.node.runner import LocalData, NodeRunner
from services.node.training import select_device
from shared.model import ModelConfig, build_model, initial_state
from shared.pki import bootstrap
from shared.schemas import (
    API_PREFIX,
    Mechanism,
    PrivacyPolicy,
    RegionDice,
    RoundKind,
    RoundView,
    RunCreate,
    RunState,
    TaskPoll,
    TrainingPlan,
)

with warnings.catch_warnings():
    # starlette nudges TestClient users towards httpx2; the node ships with httpx.
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient`")
    from starlette.testclient import TestClient

TARGET_RATIO = 0.98
"""DESIGN section 6: federated Dice within 2 % of centralised."""


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark: centralised (policy None) or FedAvg under ``policy``."""

    name: str
    policy: PrivacyPolicy | None


@dataclass(frozen=True)
class QualityConfig:
    """Everything a benchmark run depends on; equal configs give equal non-private results."""

    cohort: CohortConfig
    model: ModelConfig
    plan: TrainingPlan
    rounds: int
    val_fraction: float
    settings: tuple[Setting, ...]


def standard_settings(
    fraction: float,
    clip: float,
    svt_epsilons: Sequence[float],
    l2_clip: float,
    sigmas: Sequence[float],
) -> tuple[Setting, ...]:
    """Centralised, FedAvg, partial sharing, SVT per epsilon, Gaussian per sigma."""
    svt = (
        PrivacyPolicy(mechanism=Mechanism.SVT, fraction=fraction, clip=clip, epsilon=epsilon)
        for epsilon in svt_epsilons
    )
    gaussian = (
        PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=sigma, l2_clip=l2_clip)
        for sigma in sigmas
    )
    partial = PrivacyPolicy(mechanism=Mechanism.PARTIAL, fraction=fraction, clip=clip)
    return (
        Setting("centralised", None),
        Setting("fedavg", PrivacyPolicy()),
        Setting(f"partial f={fraction:g}", partial),
        *(Setting(f"svt eps={p.epsilon:g}", p) for p in svt),
        *(Setting(f"gaussian sigma={p.noise_multiplier:g}", p) for p in gaussian),
    )


def full_config() -> QualityConfig:
    """The CPU-sized benchmark: 40 cases over 4 sites, about a quarter of an hour on 2 cores.

    24^3 volumes with whole-volume crops keep a step near 0.1 s on a CPU core pair; 20
    rounds of one local epoch bring FedAvg to its plateau (centralised gets there sooner).
    The SVT and partial settings share fraction 0.3 and clip 1e-2 (a round's Adam steps move
    a weight by about 0.003 to 0.01 here); the Gaussian clip S = 10 is about the largest
    update norm, so its noise is what costs Dice, not its clipping.
    """
    return QualityConfig(
        cohort=CohortConfig(num_sites=4, total_cases=40, volume=24, seed=3),
        model=ModelConfig(init_filters=8),
        plan=TrainingPlan(max_steps=None, learning_rate=2e-3, crop_size=(24, 24, 24), seed=0),
        rounds=20,
        val_fraction=0.25,
        settings=standard_settings(0.3, 1e-2, (1e5, 1e6, 1e7), 10.0, (1e-3, 3e-3)),
    )


def tiny_config() -> QualityConfig:
    """The same pipeline in seconds: the smallest cohort, a two-level model, two rounds."""
    return QualityConfig(
        cohort=CohortConfig(num_sites=4, total_cases=8, volume=24, seed=0),
        model=ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)),
        plan=TrainingPlan(max_steps=1, learning_rate=1e-3, crop_size=(16, 16, 16), seed=0),
        rounds=2,
        val_fraction=0.5,
        settings=standard_settings(0.3, 1e-2, (1e5, 1e6, 1e7), 10.0, (1e-3, 3e-3)),
    )


@dataclass(frozen=True)
class SiteData:
    """One site's cases (images [4, D, H, W], labels [3, D, H, W]) split as its node does."""

    name: str
    train: list[Case]
    val: list[Case]


@dataclass(frozen=True)
class SettingResult:
    """Dice after every round (index 0: the initial model, -1: final) and privacy spent."""

    setting: Setting
    per_round: list[RegionDice]
    steps: int
    seconds: float
    epsilon_round: float | None = None
    epsilon_total: float | None = None
    delta: float = 0.0

    @property
    def final(self) -> RegionDice:
        return self.per_round[-1]


def weighted_dice(scores: Sequence[tuple[RegionDice, int]]) -> RegionDice:
    """Mean of per-site Dice weighted by validation cases, i.e. the Dice over pooled cases."""
    total = sum(weight for _, weight in scores)
    if total <= 0:
        raise ValueError("weighted_dice needs at least one site with validation cases")
    tc, wt, et = (
        sum(getattr(dice, region) * weight for dice, weight in scores) / total
        for region in ("tc", "wt", "et")
    )
    return RegionDice(tc=tc, wt=wt, et=et, mean=(tc + wt + et) / 3.0)


def load_sites(config: QualityConfig, root: Path) -> list[SiteData]:
    """Write (or reuse) the cohort under `root` and load every site's split as a node would."""
    sites = []
    for site in write_cohort(root, config.cohort):
        train, val = load_local_split(site.root, config.val_fraction, config.plan.seed)
        if not val:
            raise ValueError(f"{site.name} has no validation case; raise val_fraction")
        sites.append(SiteData(site.name, train, val))
    return sites


def _say(name: str, after: int, rounds: int, dice: RegionDice) -> None:
    print(f"  {name}: after round {after}/{rounds}, mean Dice {dice.mean:.3f}", flush=True)


def run_centralised(
    setting: Setting, config: QualityConfig, sites: Sequence[SiteData], device: torch.device
) -> SettingResult:
    """Train on the pooled training cases and score on the pooled validation cases."""
    began = time.perf_counter()
    val = [case for site in sites for case in site.val]
    model = build_model(config.model)
    model.load_state_dict(initial_state(config.model, config.plan.seed))
    initial = evaluate(model, val, config.plan.crop_size, device)
    result = train_centralised(
        config.model,
        config.plan,
        config.rounds,
        [site.train for site in sites],
        val,
        device,
        seed=config.plan.seed,
        on_round=lambda number, dice: _say(setting.name, number, config.rounds, dice),
    )
    return SettingResult(
        setting, [initial, *result.dice], result.steps, time.perf_counter() - began
    )


class InProcessFederation:
    """The aggregator app and one NodeRunner per site in this process; one run per setting.

    Requests go through starlette's TestClient with each holder's certificate in the ASGI
    TLS extension, where uvicorn's peer-certificate protocol would put it. The round ticker
    is replaced by calling ``Federation.advance`` after every sweep over the nodes.
    """

    def __init__(self, workdir: Path, names: Sequence[str]) -> None:
        self.workdir = workdir
        self.names = list(names)
        self.pki = workdir / "pki"
        bootstrap(self.pki, nodes=self.names, admins=("admin",))

    def _client(self, app: object, name: str) -> TestClient:
        der = ssl.PEM_cert_to_DER_cert((self.pki / f"{name}.pem").read_text())
        asgi = cast(ASGIApp, _WithPeerCertificate(app, tls_extension(der)))
        return TestClient(asgi, base_url="https://t")

    def run(
        self,
        setting: Setting,
        config: QualityConfig,
        sites: Sequence[SiteData],
        device: torch.device,
    ) -> SettingResult:
        """One run of `config.rounds` rounds plus the evaluation round under setting.policy."""
        if setting.policy is None:
            raise ValueError(f"setting {setting.name} has no privacy policy to federate with")
        began = time.perf_counter()
        state = self.workdir / "".join(c if c.isalnum() else "-" for c in setting.name)
        engine = make_engine(f"sqlite:///{state / 'aggregator.db'}")
        try:
            federation = Federation(engine, BlobStore(state / "blobs"))
            federation.migrate()
            settings = AggregatorSettings(
                tls_cert=self.pki / "aggregator.pem",
                tls_key=self.pki / "aggregator-key.pem",
                tls_ca=self.pki / "ca.pem",
                state_dir=state,
            )
            app = create_app(settings, federation)
            request = RunCreate(
                name=setting.name[:64],
                rounds=config.rounds,
                expected_nodes=self.names,
                min_nodes=len(self.names),
                model=config.model,
                plan=config.plan,
                privacy=setting.policy,
                seed=config.plan.seed,
            )
            response = self._client(app, "admin").post(
                f"{API_PREFIX}/runs", json=request.model_dump(mode="json")
            )
            response.raise_for_status()
            run_id = int(response.json()["id"])
            runners = [
                NodeRunner(
                    AggregatorClient(self._client(app, site.name), max_attempts=1),
                    LocalData(train=site.train, val=site.val),
                    state / site.name,
                    device,
                    site.name,
                )
                for site in sites
            ]
            self._drive(federation, run_id, runners, setting, config, sites)
            rounds = federation.list_rounds(run_id)
        finally:
            engine.dispose()
        return self._result(setting, rounds, sites, config, time.perf_counter() - began)

    def _drive(
        self,
        federation: Federation,
        run_id: int,
        runners: Sequence[NodeRunner],
        setting: Setting,
        config: QualityConfig,
        sites: Sequence[SiteData],
    ) -> None:
        """Let every node do its task, close the round, repeat until the run has ended."""
        while federation.get_run(run_id).state == RunState.RUNNING:
            numbers = set()
            for runner in runners:
                # AggregatorClient.poll sets a long-poll timeout, which TestClient refuses.
                answer = runner.client.http.get(f"{API_PREFIX}/tasks/next")
                task = TaskPoll.model_validate_json(answer.content).task
                if task is not None:
                    runner.handle(task)
                    numbers.add(task.round)
            advanced = False
            while federation.advance():
                advanced = True
            if not numbers and not advanced:
                raise RuntimeError(f"run {run_id} ({setting.name}) is stuck: no task, no change")
            for number in sorted(numbers):
                dice = _base_dice(federation.get_round(run_id, number), sites)
                _say(setting.name, number - 1, config.rounds, dice)
        run = federation.get_run(run_id)
        if run.state != RunState.COMPLETED:
            raise RuntimeError(f"run {run_id} ({setting.name}) ended {run.state}: {run.detail}")

    @staticmethod
    def _result(
        setting: Setting,
        rounds: Sequence[RoundView],
        sites: Sequence[SiteData],
        config: QualityConfig,
        seconds: float,
    ) -> SettingResult:
        ordered = sorted(rounds, key=lambda r: r.round)
        last_train = [r for r in ordered if r.kind == RoundKind.TRAIN][-1]
        spends = [u.privacy for u in last_train.updates if u.privacy is not None]
        totals = [u.privacy_total for u in last_train.updates if u.privacy_total is not None]
        per_round = [spend.epsilon for spend in spends]
        cumulative = [total.epsilon for total in totals]
        steps = (
            config.rounds
            * config.plan.local_epochs
            * sum(steps_per_epoch(len(site.train), config.plan) for site in sites)
        )
        return SettingResult(
            setting=setting,
            per_round=[_base_dice(r, sites) for r in ordered],
            steps=steps,
            seconds=seconds,
            epsilon_round=_worst(per_round),
            epsilon_total=_worst(cumulative),
            delta=max((spend.delta for spend in spends), default=0.0),
        )


def _worst(epsilons: Sequence[float | None]) -> float | None:
    """The largest epsilon over nodes; None (no guarantee) when any node has none or no data."""
    if not epsilons or any(epsilon is None for epsilon in epsilons):
        return None
    return max(epsilon for epsilon in epsilons if epsilon is not None)


def _base_dice(round_view: RoundView, sites: Sequence[SiteData]) -> RegionDice:
    """Dice of a round's base model over all sites' validation cases, from the nodes' metrics."""
    val_cases = {site.name: len(site.val) for site in sites}
    scores = [
        (update.metrics.dice_global, val_cases[update.node])
        for update in round_view.updates
        if update.metrics.dice_global is not None
    ]
    return weighted_dice(scores)


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


def _ratio(result: SettingResult, baseline: SettingResult | None) -> float | None:
    if baseline is None or baseline.final.mean <= 0:
        return None
    return result.final.mean / baseline.final.mean


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "inf" if value is None else format(value, spec)


COLUMNS = (
    "setting",
    "mechanism",
    "epsilon_per_round",
    "epsilon_total",
    "delta",
    "rounds",
    "steps",
    "dice_tc",
    "dice_wt",
    "dice_et",
    "dice_mean",
    "ratio_to_centralised",
    "seconds",
)


def write_csv(results: Sequence[SettingResult], config: QualityConfig, out: Path) -> None:
    """``results.csv``: a row per setting (epsilon empty: no DP claim); ``rounds.csv``."""
    baseline = next((r for r in results if r.setting.policy is None), None)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for result in results:
            mechanism = (
                "centralised"
                if result.setting.policy is None
                else result.setting.policy.mechanism.value
            )
            ratio = _ratio(result, baseline)
            writer.writerow(
                [
                    result.setting.name,
                    mechanism,
                    "" if result.epsilon_round is None else f"{result.epsilon_round:.6g}",
                    "" if result.epsilon_total is None else f"{result.epsilon_total:.6g}",
                    f"{result.delta:g}",
                    config.rounds,
                    result.steps,
                    *(f"{getattr(result.final, r):.4f}" for r in ("tc", "wt", "et", "mean")),
                    "" if ratio is None else f"{ratio:.4f}",
                    f"{result.seconds:.1f}",
                ]
            )
    with (out / "rounds.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(("setting", "round", "dice_tc", "dice_wt", "dice_et", "dice_mean"))
        for result in results:
            for number, dice in enumerate(result.per_round):
                writer.writerow(
                    [
                        result.setting.name,
                        number,
                        *(f"{getattr(dice, r):.4f}" for r in ("tc", "wt", "et", "mean")),
                    ]
                )


def plot(results: Sequence[SettingResult], out: Path) -> Path:
    """``quality.png``: final mean Dice against total epsilon, and mean Dice per round."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mechanism, marker in ((Mechanism.SVT, "o"), (Mechanism.GAUSSIAN, "s")):
        points = sorted(
            (r.epsilon_total, r.final.mean)
            for r in results
            if r.setting.policy is not None
            and r.setting.policy.mechanism is mechanism
            and r.epsilon_total is not None
        )
        if points:
            left.plot(*zip(*points, strict=True), marker=marker, label=mechanism.value)
    for index, result in enumerate(r for r in results if r.epsilon_total is None):
        left.axhline(
            result.final.mean,
            linestyle="--",
            color=f"C{index + 2}",
            label=f"{result.setting.name} (no DP)",
        )
    left.set(
        xscale="log",
        xlabel="epsilon after all rounds (per node)",
        ylabel="final mean Dice (TC, WT, ET)",
        title="Privacy and utility",
    )
    left.legend(fontsize="small")
    for result in results:
        right.plot([d.mean for d in result.per_round], label=result.setting.name)
    right.set(xlabel="round", ylabel="mean Dice of the global model", title="Dice per round")
    right.legend(fontsize="small")
    figure.tight_layout()
    path = out / "quality.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def table(results: Sequence[SettingResult]) -> str:
    """The printed summary: Dice per region, ratio to centralised, epsilon, time."""
    baseline = next((r for r in results if r.setting.policy is None), None)
    lines = [
        f"{'setting':<24} {'eps/round':>9} {'eps total':>9} {'TC':>6} {'WT':>6} {'ET':>6} "
        f"{'mean':>6} {'vs central':>10} {'time s':>7}"
    ]
    for result in results:
        dice, ratio = result.final, _ratio(result, baseline)
        epsilon = (
            ("-", "-")
            if result.setting.policy is None
            else (_fmt(result.epsilon_round), _fmt(result.epsilon_total))
        )
        lines.append(
            f"{result.setting.name:<24} {epsilon[0]:>9} {epsilon[1]:>9} {dice.tc:>6.3f} "
            f"{dice.wt:>6.3f} {dice.et:>6.3f} {dice.mean:>6.3f} "
            f"{'-' if ratio is None else f'{ratio:.3f}':>10} {result.seconds:>7.0f}"
        )
    return "\n".join(lines)


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
    fedavg = next(r for r in results if r.setting.name == "fedavg")
    central = next(r for r in results if r.setting.policy is None)
    ratio = _ratio(fedavg, central)
    verdict = "met" if ratio is not None and ratio >= TARGET_RATIO else "NOT met"
    print(
        f"\nFedAvg / centralised mean Dice: {_fmt(ratio, '.3f')} "
        f"(target >= {TARGET_RATIO}: {verdict}); {config.rounds} rounds, {device}, "
        f"{time.perf_counter() - began:.0f} s in all"
    )
    print(f"wrote {args.out / 'results.csv'}, {args.out / 'rounds.csv'} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
