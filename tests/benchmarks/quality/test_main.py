"""The quality benchmark end to end in its tiny form: every suite, CSVs, plots, tables."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import pytest

from benchmarks.quality.config import tiny_aggregation_config, tiny_config, tiny_patient_config
from benchmarks.quality.main import main
from benchmarks.quality.report import COLUMNS
from shared.privacy.accounting import dpsgd_epsilon, dpsgd_noise_multiplier


def read_rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int, str]:
    """One run of ``--tiny`` (both suites) for the tests below: out folder, code, stdout."""
    out = tmp_path_factory.mktemp("bench-quality")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["--tiny", "--out", str(out), "--device", "cpu"])
    return out, code, printed.getvalue()


def test_quality_tiny_update_suite_runs_every_setting_end_to_end(
    tiny_run: tuple[Path, int, str],
) -> None:
    out, code, printed = tiny_run
    config = tiny_config()

    rows = read_rows(out / "results.csv")

    assert code == 0
    assert tuple(rows[0]) == COLUMNS
    names = [setting.name for setting in config.settings]
    assert [row["setting"] for row in rows] == names
    assert [row["mechanism"] for row in rows] == [
        "centralised", "none", "partial", "svt", "svt", "svt", "gaussian", "gaussian",
    ]  # fmt: skip
    assert [row["privacy_unit"] for row in rows] == ["none"] * 3 + ["update"] * 5
    assert [row["noise_multiplier"] for row in rows] == [""] * 6 + ["0.001", "0.003"]
    for row in rows:
        assert 0.0 <= float(row["dice_mean"]) <= 1.0
        assert row["rounds"] == str(config.rounds)
    assert rows[0]["ratio_to_centralised"] == "1.0000"
    assert rows[1]["ratio_to_fedavg"] == "1.0000"
    # Only the DP mechanisms state an epsilon; SVT's composes linearly over the rounds.
    assert [bool(row["epsilon_total"]) for row in rows] == [False] * 3 + [True] * 5
    assert float(rows[3]["epsilon_per_round"]) == pytest.approx(1e5)
    assert float(rows[3]["epsilon_total"]) == pytest.approx(2e5)
    per_round = read_rows(out / "rounds.csv")
    assert len(per_round) == len(names) * (config.rounds + 1)
    # Every setting starts from the same seeded initial model, scored on the same cases.
    initial = {row["dice_mean"] for row in per_round if row["round"] == "0"}
    assert len(initial) == 1
    assert (out / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"\n{config.title}\nsetting " in printed
    for name in names:
        assert f"\n{name} " in printed


def test_quality_tiny_patient_suite_runs_dpsgd_at_its_whole_run_epsilon(
    tiny_run: tuple[Path, int, str],
) -> None:
    out, code, printed = tiny_run
    config = tiny_patient_config()
    policy = config.settings[2].policy
    assert policy is not None
    q, steps = float(policy.sample_rate or 0.0), config.rounds * (config.plan.max_steps or 0)
    assert (q, steps, policy.target_epsilon) == (0.5, 2, 8.0)
    sigma = dpsgd_noise_multiplier(8.0, q, steps, 1e-5)

    rows = read_rows(out / "patient" / "results.csv")

    assert code == 0
    assert [row["setting"] for row in rows] == ["centralised", "fedavg", "dpsgd eps=8"]
    assert [row["mechanism"] for row in rows] == ["centralised", "none", "dpsgd"]
    assert [row["privacy_unit"] for row in rows] == ["none", "none", "patient"]
    dpsgd = rows[2]
    # The aggregator derived sigma from the whole run's target; the ledgers composed it.
    assert dpsgd["noise_multiplier"] == f"{sigma:.6g}"
    assert float(dpsgd["epsilon_per_round"]) == pytest.approx(
        dpsgd_epsilon(sigma, q, 1, 1e-5), rel=1e-5
    )
    assert float(dpsgd["epsilon_total"]) == pytest.approx(
        dpsgd_epsilon(sigma, q, steps, 1e-5), rel=1e-5
    )
    assert 7.9 < float(dpsgd["epsilon_total"]) <= 8.0
    assert dpsgd["delta"] == "1e-05"
    # DP-SGD takes max_steps steps per round at every one of the 4 sites.
    assert dpsgd["steps"] == str(steps * 4)
    for row in rows:
        assert 0.0 <= float(row["dice_mean"]) <= 1.0
    per_round = read_rows(out / "patient" / "rounds.csv")
    assert [row["round"] for row in per_round] == ["0", "1", "2"] * 3
    assert len({row["dice_mean"] for row in per_round if row["round"] == "0"}) == 1
    assert (out / "patient" / "quality.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"\n{config.title}\nsetting " in printed
    assert "\ndpsgd eps=8              patient " in printed
    assert "\nDP-SGD (patient-level, whole-run eps 8) / FedAvg mean Dice: " in printed
    assert printed.count("FedAvg / centralised mean Dice: ") == 3


def test_quality_tiny_aggregation_suite_compares_fedadam_with_fedavg_in_rounds(
    tiny_run: tuple[Path, int, str],
) -> None:
    out, code, printed = tiny_run
    config = tiny_aggregation_config()
    rows = read_rows(out / "aggregation" / "results.csv")
    assert code == 0
    assert [row["setting"] for row in rows] == [s.name for s in config.settings]
    assert [row["setting"] for row in rows] == ["fedavg", "fedadam lr=0.01", "trimmed-mean",
                                                "median"]  # fmt: skip
    finals = {row["setting"]: row["dice_mean"] for row in rows}
    assert len(set(finals.values())) > 1, "every strategy gave the same model"
    assert "rounds to reach 0.95 x FedAvg's final mean Dice (" in printed
    assert "\n  fedadam lr=0.01: " in printed


def test_only_keeps_the_named_settings_and_refuses_an_unknown_one() -> None:
    from benchmarks.quality.config import patient_config
    from benchmarks.quality.main import only

    config = only(patient_config(), ["fedavg", "dpsgd eps=8"])
    assert [s.name for s in config.settings] == ["fedavg", "dpsgd eps=8"]
    with pytest.raises(SystemExit, match="no setting 'dpsgd eps=9'"):
        only(patient_config(), ["dpsgd eps=9"])
