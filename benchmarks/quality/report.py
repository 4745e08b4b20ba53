"""The benchmark's report: ``results.csv``, ``rounds.csv``, ``quality.png`` and printed lines."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

from benchmarks.quality.config import QualityConfig
from benchmarks.quality.results import SettingResult
from shared.schemas import AggregationName, Mechanism, PrivacyUnit, RegionDice

TARGET_RATIO = 0.98
"""DESIGN section 6: federated Dice within 2 % of centralised."""
DPSGD_TARGET_EPSILON = 8.0
DPSGD_TARGET_RATIO = 0.9
"""Patient-level DP-SGD at whole-run epsilon 8 within 10 % of non-private FedAvg's Dice."""
UNIT_LABELS = {
    PrivacyUnit.PATIENT: "patient",
    PrivacyUnit.UPDATE: "update",
    PrivacyUnit.NONE: "-",
}
UNITS_NOTE = (
    "unit: patient = one patient added or removed, epsilon over the whole run (DP-SGD); "
    "update = a node's whole update, epsilon per round, composed over the rounds in total "
    "(SVT, Gaussian); - = no DP guarantee (eps inf)"
)


def say_progress(name: str, after: int, rounds: int, dice: RegionDice) -> None:
    """Print a setting's mean Dice after a round, as the run goes."""
    print(f"  {name}: after round {after}/{rounds}, mean Dice {dice.mean:.3f}", flush=True)


def _fedavg(results: Sequence[SettingResult]) -> SettingResult | None:
    return next((r for r in results if r.setting.name == "fedavg"), None)


def _ratio(result: SettingResult, baseline: SettingResult | None) -> float | None:
    if baseline is None or baseline.final.mean <= 0:
        return None
    return result.final.mean / baseline.final.mean


def _fmt(value: float | None, spec: str = ".3g") -> str:
    return "inf" if value is None else format(value, spec)


COLUMNS = (
    "setting",
    "mechanism",
    "privacy_unit",
    "noise_multiplier",
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
    "ratio_to_fedavg",
    "seconds",
)


def write_csv(results: Sequence[SettingResult], config: QualityConfig, out: Path) -> None:
    """``results.csv``: a row per setting (epsilon empty: no DP claim); ``rounds.csv``.

    ``privacy_unit`` says whose data the epsilon protects (patient: DP-SGD, over the whole
    run; update: SVT and Gaussian, per round); ``noise_multiplier`` is the sigma applied.
    """
    baseline = next((r for r in results if r.setting.policy is None), None)
    fedavg = _fedavg(results)
    with (out / "results.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for result in results:
            mechanism = (
                "centralised"
                if result.setting.policy is None
                else result.setting.policy.mechanism.value
            )
            ratio, to_fedavg = _ratio(result, baseline), _ratio(result, fedavg)
            sigma = result.noise_multiplier
            writer.writerow(
                [
                    result.setting.name,
                    mechanism,
                    result.unit.value,
                    "" if sigma is None else f"{sigma:.6g}",
                    "" if result.epsilon_round is None else f"{result.epsilon_round:.6g}",
                    "" if result.epsilon_total is None else f"{result.epsilon_total:.6g}",
                    f"{result.delta:g}",
                    config.rounds,
                    result.steps,
                    *(f"{getattr(result.final, r):.4f}" for r in ("tc", "wt", "et", "mean")),
                    "" if ratio is None else f"{ratio:.4f}",
                    "" if to_fedavg is None else f"{to_fedavg:.4f}",
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


def plot(results: Sequence[SettingResult], out: Path, title: str = "") -> Path:
    """``quality.png``: final mean Dice against total epsilon, and mean Dice per round.

    The legend names each mechanism's unit of privacy: patient-level (DP-SGD, whole run)
    or update-level (SVT, Gaussian, composed over the rounds).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for mechanism, marker, unit in (
        (Mechanism.SVT, "o", "update-level"),
        (Mechanism.GAUSSIAN, "s", "update-level"),
        (Mechanism.DPSGD, "^", "patient-level"),
    ):
        points = sorted(
            (r.epsilon_total, r.final.mean)
            for r in results
            if r.setting.policy is not None
            and r.setting.policy.mechanism is mechanism
            and r.epsilon_total is not None
        )
        if points:
            label = f"{mechanism.value} ({unit})"
            left.plot(*zip(*points, strict=True), marker=marker, label=label)
    for index, result in enumerate(r for r in results if r.epsilon_total is None):
        left.axhline(
            result.final.mean,
            linestyle="--",
            color=f"C{index + 2}",
            label=f"{result.setting.name} (no DP)",
        )
    left.set(
        xscale="log",
        xlabel="epsilon after all rounds (per node; unit as labelled)",
        ylabel="final mean Dice (TC, WT, ET)",
        title="Privacy and utility",
    )
    left.legend(fontsize="small")
    for result in results:
        right.plot([d.mean for d in result.per_round], label=result.setting.name)
    right.set(xlabel="round", ylabel="mean Dice of the global model", title="Dice per round")
    right.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    path = out / "quality.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def table(results: Sequence[SettingResult]) -> str:
    """The printed summary: unit of privacy, epsilon, Dice per region, ratios, time."""
    baseline, fedavg = (
        next((r for r in results if r.setting.policy is None), None),
        _fedavg(results),
    )
    lines = [
        f"{'setting':<24} {'unit':>7} {'eps/round':>9} {'eps total':>9} {'TC':>6} {'WT':>6} "
        f"{'ET':>6} {'mean':>6} {'vs central':>10} {'vs fedavg':>9} {'time s':>7}"
    ]
    for result in results:
        dice = result.final
        ratios = (_ratio(result, baseline), _ratio(result, fedavg))
        central, to_fedavg = ("-" if r is None else f"{r:.3f}" for r in ratios)
        epsilon = (
            ("-", "-")
            if result.setting.policy is None
            else (_fmt(result.epsilon_round), _fmt(result.epsilon_total))
        )
        lines.append(
            f"{result.setting.name:<24} {UNIT_LABELS[result.unit]:>7} {epsilon[0]:>9} "
            f"{epsilon[1]:>9} {dice.tc:>6.3f} {dice.wt:>6.3f} {dice.et:>6.3f} "
            f"{dice.mean:>6.3f} {central:>10} {to_fedavg:>9} {result.seconds:>7.0f}"
        )
    return "\n".join(lines)


def fedavg_verdict(results: Sequence[SettingResult]) -> str:
    """FedAvg's final mean Dice over centralised's, and whether it meets TARGET_RATIO."""
    fedavg = next((r for r in results if r.setting.name == "fedavg"), None)
    central = next((r for r in results if r.setting.policy is None), None)
    if fedavg is None or central is None:
        return "FedAvg / centralised mean Dice: not measured (this run has not both settings)"
    ratio = _ratio(fedavg, central)
    verdict = "met" if ratio is not None and ratio >= TARGET_RATIO else "NOT met"
    return (
        f"FedAvg / centralised mean Dice: {_fmt(ratio, '.3f')} "
        f"(target >= {TARGET_RATIO}: {verdict})"
    )


def dpsgd_verdict(results: Sequence[SettingResult]) -> str | None:
    """DP-SGD's final mean Dice at whole-run epsilon 8 over FedAvg's; None without either."""
    fedavg = _fedavg(results)
    dpsgd = next(
        (
            r
            for r in results
            if r.setting.policy is not None
            and r.setting.policy.mechanism is Mechanism.DPSGD
            and r.setting.policy.target_epsilon == DPSGD_TARGET_EPSILON
        ),
        None,
    )
    if fedavg is None or dpsgd is None:
        return None
    ratio = _ratio(dpsgd, fedavg)
    verdict = "met" if ratio is not None and ratio >= DPSGD_TARGET_RATIO else "NOT met"
    return (
        f"DP-SGD (patient-level, whole-run eps {_fmt(dpsgd.epsilon_total, '.3g')}) / FedAvg "
        f"mean Dice: {_fmt(ratio, '.3f')} (target >= {DPSGD_TARGET_RATIO} at eps "
        f"{DPSGD_TARGET_EPSILON:g}: {verdict})"
    )


REACH_FRACTION = 0.95
"""The share of FedAvg's final mean Dice a strategy must reach to count as converged."""


def rounds_to_reach(result: SettingResult, level: float) -> int | None:
    """The first round after which the global model's mean Dice is at least ``level``."""
    return next((i for i, d in enumerate(result.per_round) if d.mean >= level), None)


def fedadam_verdict(results: Sequence[SettingResult]) -> str | None:
    """Rounds to reach 95 % of FedAvg's final mean Dice, FedAvg against each FedAdam setting."""
    fedavg = _fedavg(results)
    adams = [r for r in results if r.setting.aggregation.name is AggregationName.FEDADAM]
    if fedavg is None or not adams:
        return None
    level = REACH_FRACTION * fedavg.final.mean
    base = rounds_to_reach(fedavg, level)
    lines = [f"rounds to reach {REACH_FRACTION:g} x FedAvg's final mean Dice ({level:.3f}): "
             f"fedavg {base}"]  # fmt: skip
    for adam in adams:
        reached = rounds_to_reach(adam, level)
        faster = reached is not None and base is not None and reached <= base
        lines.append(
            f"  {adam.setting.name}: {reached if reached is not None else 'never'} "
            f"(final {adam.final.mean:.3f}; at least as fast as FedAvg: "
            f"{'yes' if faster else 'no'})"
        )
    return "\n".join(lines)
