"""Tests of the benchmark's report on hand-made results: both CSVs, the table, the verdict."""

from __future__ import annotations

import csv
from pathlib import Path

from benchmarks.quality.config import tiny_config
from benchmarks.quality.report import COLUMNS, fedavg_verdict, table, write_csv
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
        ["centralised", "centralised", "", "", "0", "2", "8",
         "0.6000", "0.9000", "0.3000", "0.6000", "1.0000", "12.3"],
        ["fedavg", "none", "", "", "0", "2", "8",
         "0.6000", "0.8400", "0.3000", "0.5900", "0.9833", "45.6"],
        ["svt eps=100000", "svt", "100000", "200000", "0", "2", "8",
         "0.3000", "0.6000", "0.0000", "0.3000", "0.5000", "7.0"],
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


def test_table_lines_show_dice_ratio_epsilon_and_time() -> None:
    lines = table(hand_made()).split("\n")

    assert lines == [
        "setting                  eps/round eps total     TC     WT     ET   mean vs central"
        "  time s",
        "centralised                      -         -  0.600  0.900  0.300  0.600      1.000"
        "      12",
        "fedavg                         inf       inf  0.600  0.840  0.300  0.590      0.983"
        "      46",
        "svt eps=100000               1e+05     2e+05  0.300  0.600  0.000  0.300      0.500"
        "       7",
    ]


def test_fedavg_verdict_met_within_two_percent_of_centralised() -> None:
    assert fedavg_verdict(hand_made(fedavg_mean=0.59)) == (
        "FedAvg / centralised mean Dice: 0.983 (target >= 0.98: met)"
    )


def test_fedavg_verdict_not_met_below_the_target() -> None:
    assert fedavg_verdict(hand_made(fedavg_mean=0.5)) == (
        "FedAvg / centralised mean Dice: 0.833 (target >= 0.98: NOT met)"
    )
