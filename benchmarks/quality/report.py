"""The benchmark's report: ``results.csv``, ``rounds.csv``, ``quality.png`` and printed lines."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from benchmarks.quality.config import QualityConfig
from benchmarks.quality.results import SettingResult
from shared.schemas import Mechanism, RegionDice

TARGET_RATIO = 0.98
"""DESIGN section 6: federated Dice within 2 % of centralised."""


def say_progress(name: str, after: int, rounds: int, dice: RegionDice) -> None:
    """Print a setting's mean Dice after a round, as the run goes."""
    print(f"  {name}: after round {after}/{rounds}, mean Dice {dice.mean:.3f}", flush=True)


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


def fedavg_verdict(results: Sequence[SettingResult]) -> str:
    """FedAvg's final mean Dice over centralised's, and whether it meets TARGET_RATIO."""
    fedavg = next(r for r in results if r.setting.name == "fedavg")
    central = next(r for r in results if r.setting.policy is None)
    ratio = _ratio(fedavg, central)
    verdict = "met" if ratio is not None and ratio >= TARGET_RATIO else "NOT met"
    return (
        f"FedAvg / centralised mean Dice: {_fmt(ratio, '.3f')} "
        f"(target >= {TARGET_RATIO}: {verdict})"
    )
