"""The final-model lines of the demo's and the admin CLI's reports."""

from __future__ import annotations

from datetime import UTC, datetime

from services.admin.commands import report
from services.demo.table import final_dice, final_hd95, format_hd95
from shared.schemas import RegionDice, RegionDistance, RoundView

WHEN = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
DICE = RegionDice(tc=0.5, wt=0.75, et=0.25, mean=0.5)
HD95 = RegionDistance(tc=4.25, wt=3.0, et=12.5, mean=6.5833)


def _round(number: int, kind: str, **changes: object) -> RoundView:
    fields: dict[str, object] = {
        "run_id": 1, "round": number, "kind": kind, "state": "closed", "attempt": 1,
        "base_model": "0" * 64, "result_model": None, "expected_nodes": ["a"],
        "reported_nodes": ["a"], "declined_nodes": [], "num_samples": 1, "opened_at": WHEN,
        "deadline": WHEN, "closed_at": WHEN, "detail": None, "mean_dice_global": None,
        "mean_dice_local": None, "updates": [],
    }  # fmt: skip
    return RoundView.model_validate({**fields, **changes})


def test_final_scores_come_from_the_evaluation_round() -> None:
    rounds = [
        _round(1, "train", mean_dice_global=RegionDice(tc=0, wt=0, et=0, mean=0)),
        _round(2, "evaluate", mean_dice_global=DICE, mean_hd95_global=HD95),
    ]
    assert final_dice(rounds) == DICE
    assert final_hd95(rounds) == HD95
    assert final_hd95(rounds[:1]) is None


def test_report_adds_the_hd95_line_only_when_measured() -> None:
    with_hd95 = report([_round(1, "evaluate", mean_dice_global=DICE, mean_hd95_global=HD95)])
    assert "final global model: TC 0.500  WT 0.750  ET 0.250  mean 0.500" in with_hd95
    assert "final global model HD95: TC 4.2  WT 3.0  ET 12.5  mean 6.6 mm" in with_hd95
    without = report([_round(1, "evaluate", mean_dice_global=DICE)])
    assert "HD95" not in without
    assert format_hd95(HD95) == "TC 4.2  WT 3.0  ET 12.5  mean 6.6 mm"
