"""Tests of the benchmark's report on hand-made results: both CSVs, the table, the verdicts."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.quality.config import tiny_aggregation_config, tiny_config, tiny_patient_config
from benchmarks.quality.report import (
    COLUMNS,
    dpsgd_verdict,
    fedadam_verdict,
    fedavg_verdict,
    table,
    write_csv,
)
from benchmarks.quality.results import SettingResult
from shared.schemas import RegionDice

INITIAL = RegionDice(tc=0.1, wt=0.2, et=0.3, mean=0.2)


def hand_made(fedavg_mean: float = 0.59) -> list[SettingResult]:
    """Centralised, FedAvg and SVT at epsilon 1e5 over two rounds, as in the tiny config."""
    centralised, fedavg, _, svt, *_ = tiny_config().settings
    return [
        SettingResult(
            centralised, [INITIAL, RegionDice(tc=0.6, wt=0.9, et=0.3, mean=0.6)], 8, 12.3
        ),
        SettingResult(
            fedavg, [INITIAL, RegionDice(tc=0.6, wt=0.84, et=0.3, mean=fedavg_mean)], 8, 45.6
        ),
        SettingResult(
            svt,
            [INITIAL, RegionDice(tc=0.3, wt=0.6, et=0.0, mean=0.3)],
            8,
            7.0,
            epsilon_round=1e5,
            epsilon_total=2e5,
        ),
    ]


def test_write_csv_writes_a_row_per_setting_and_per_round(tmp_path: Path) -> None:
    write_csv(hand_made(), tiny_config(), tmp_path)

    with (tmp_path / "results.csv").open() as handle:
        results = list(csv.reader(handle))
    with (tmp_path / "rounds.csv").open() as handle:
        rounds = list(csv.reader(handle))
    assert results == [
        list(COLUMNS),
        ["centralised", "centralised", "none", "", "", "", "0", "2", "8",
         "0.6000", "0.9000", "0.3000", "0.6000", "1.0000", "1.0169", "12.3"],
        ["fedavg", "none", "none", "", "", "", "0", "2", "8",
         "0.6000", "0.8400", "0.3000", "0.5900", "0.9833", "1.0000", "45.6"],
        ["svt eps=100000", "svt", "update", "", "100000", "200000", "0", "2", "8",
         "0.3000", "0.6000", "0.0000", "0.3000", "0.5000", "0.5085", "7.0"],
    ]  # fmt: skip
    assert rounds == [
        ["setting", "round", "dice_tc", "dice_wt", "dice_et", "dice_mean"],
        ["centralised", "0", "0.1000", "0.2000", "0.3000", "0.2000"],
        ["centralised", "1", "0.6000", "0.9000", "0.3000", "0.6000"],
        ["fedavg", "0", "0.1000", "0.2000", "0.3000", "0.2000"],
        ["fedavg", "1", "0.6000", "0.8400", "0.3000", "0.5900"],
        ["svt eps=100000", "0", "0.1000", "0.2000", "0.3000", "0.2000"],
        ["svt eps=100000", "1", "0.3000", "0.6000", "0.0000", "0.3000"],
    ]


def test_table_lines_show_unit_epsilon_dice_ratios_and_time() -> None:
    lines = table(hand_made()).split("\n")

    assert lines == [
        "setting                     unit eps/round eps total     TC     WT     ET   mean"
        " vs central vs fedavg  time s",
        "centralised                    -         -         -  0.600  0.900  0.300  0.600"
        "      1.000     1.017      12",
        "fedavg                         -       inf       inf  0.600  0.840  0.300  0.590"
        "      0.983     1.000      46",
        "svt eps=100000            update     1e+05     2e+05  0.300  0.600  0.000  0.300"
        "      0.500     0.508       7",
    ]


def patient_results(dpsgd_mean: float) -> list[SettingResult]:
    """Centralised, FedAvg and DP-SGD at whole-run epsilon 8, as in the tiny patient suite."""
    centralised, fedavg, dpsgd = tiny_patient_config().settings
    return [
        SettingResult(centralised, [INITIAL, RegionDice(tc=0.6, wt=0.9, et=0.3, mean=0.6)], 8, 1.0),
        SettingResult(fedavg, [INITIAL, RegionDice(tc=0.6, wt=0.9, et=0.0, mean=0.5)], 8, 2.0),
        SettingResult(
            dpsgd,
            [INITIAL, RegionDice(tc=0.0, wt=0.0, et=0.0, mean=dpsgd_mean)],
            8,
            3.0,
            epsilon_round=5.67,
            epsilon_total=7.998,
            delta=1e-5,
            noise_multiplier=0.7539,
        ),
    ]


def test_write_csv_marks_dpsgd_patient_level_with_its_sigma(tmp_path: Path) -> None:
    write_csv(patient_results(dpsgd_mean=0.45), tiny_patient_config(), tmp_path)

    with (tmp_path / "results.csv").open() as handle:
        dpsgd = list(csv.reader(handle))[3]
    assert dpsgd == [
        "dpsgd eps=8", "dpsgd", "patient", "0.7539", "5.67", "7.998", "1e-05", "2", "8",
        "0.0000", "0.0000", "0.0000", "0.4500", "0.7500", "0.9000", "3.0",
    ]  # fmt: skip


def test_table_marks_dpsgd_patient_level() -> None:
    lines = table(patient_results(dpsgd_mean=0.45)).split("\n")

    assert lines[3] == (
        "dpsgd eps=8              patient      5.67         8  0.000  0.000  0.000  0.450"
        "      0.750     0.900       3"
    )


def test_dpsgd_verdict_met_at_nine_tenths_of_fedavg() -> None:
    assert dpsgd_verdict(patient_results(dpsgd_mean=0.45)) == (
        "DP-SGD (patient-level, whole-run eps 8) / FedAvg mean Dice: 0.900 "
        "(target >= 0.9 at eps 8: met)"
    )


def test_dpsgd_verdict_not_met_below_nine_tenths_of_fedavg() -> None:
    assert dpsgd_verdict(patient_results(dpsgd_mean=0.4)) == (
        "DP-SGD (patient-level, whole-run eps 8) / FedAvg mean Dice: 0.800 "
        "(target >= 0.9 at eps 8: NOT met)"
    )


def test_dpsgd_verdict_none_without_a_dpsgd_setting_at_epsilon_8() -> None:
    assert dpsgd_verdict(hand_made()) is None


def test_fedavg_verdict_met_within_two_percent_of_centralised() -> None:
    assert fedavg_verdict(hand_made(fedavg_mean=0.59)) == (
        "FedAvg / centralised mean Dice: 0.983 (target >= 0.98: met)"
    )


def test_fedavg_verdict_not_met_below_the_target() -> None:
    assert fedavg_verdict(hand_made(fedavg_mean=0.5)) == (
        "FedAvg / centralised mean Dice: 0.833 (target >= 0.98: NOT met)"
    )


def _curve(*means: float) -> list[RegionDice]:
    return [RegionDice(tc=m, wt=m, et=m, mean=m) for m in means]


def test_fedadam_verdict_counts_rounds_to_reach_most_of_fedavgs_final_dice() -> None:
    fedavg, adam, *_ = tiny_aggregation_config().settings
    results = [
        SettingResult(fedavg, _curve(0.1, 0.3, 0.5, 0.58, 0.6), 8, 1.0),
        SettingResult(adam, _curve(0.1, 0.5, 0.59, 0.61, 0.62), 8, 1.0),
    ]
    assert fedadam_verdict(results) == (
        "rounds to reach 0.95 x FedAvg's final mean Dice (0.570): fedavg 3\n"
        "  fedadam lr=0.01: 2 (final 0.620; at least as fast as FedAvg: yes)"
    )
    slow = [results[0], SettingResult(adam, _curve(0.1, 0.2, 0.3, 0.4, 0.45), 8, 1.0)]
    assert fedadam_verdict(slow) == (
        "rounds to reach 0.95 x FedAvg's final mean Dice (0.570): fedavg 3\n"
        "  fedadam lr=0.01: never (final 0.450; at least as fast as FedAvg: no)"
    )
    assert fedadam_verdict(hand_made()) is None
