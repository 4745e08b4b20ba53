"""The quality benchmark end to end in its tiny form: every setting, CSVs, plot, table."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from benchmarks.quality.config import tiny_config
from benchmarks.quality.main import main
from benchmarks.quality.report import COLUMNS


def test_quality_tiny_runs_every_setting_end_to_end(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tiny_config()

    code = main(["--tiny", "--out", str(tmp_path), "--device", "cpu"])

    out = capsys.readouterr().out
    assert code == 0
    with (tmp_path / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert tuple(rows[0]) == COLUMNS
    names = [setting.name for setting in config.settings]
    assert [row["setting"] for row in rows] == names
    assert [row["mechanism"] for row in rows] == [
        "centralised", "none", "partial", "svt", "svt", "svt", "gaussian", "gaussian",
    ]  # fmt: skip
    for row in rows:
        assert 0.0 <= float(row["dice_mean"]) <= 1.0
        assert row["rounds"] == str(config.rounds)
    assert rows[0]["ratio_to_centralised"] == "1.0000"
    # Only the DP mechanisms state an epsilon; SVT's composes linearly over the rounds.
    assert [bool(row["epsilon_total"]) for row in rows] == [False] * 3 + [True] * 5
    assert float(rows[3]["epsilon_per_round"]) == pytest.approx(1e5)
    assert float(rows[3]["epsilon_total"]) == pytest.approx(2e5)
    with (tmp_path / "rounds.csv").open() as handle:
        per_round = list(csv.DictReader(handle))
    assert len(per_round) == len(names) * (config.rounds + 1)
    # Every setting starts from the same seeded initial model, scored on the same cases.
    initial = {row["dice_mean"] for row in per_round if row["round"] == "0"}
    assert len(initial) == 1
    assert (tmp_path / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "FedAvg / centralised mean Dice: " in out
    for name in names:
        assert f"\n{name} " in out
