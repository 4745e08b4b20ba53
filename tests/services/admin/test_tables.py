"""The admin CLI's tables and progress lines, from wire schemas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.admin.tables import (
    current_round_line,
    nodes_table,
    progress_line,
    run_progress,
    runs_table,
)
from shared.model import ModelConfig
from shared.schemas import PrivacyPolicy, RoundView, RunView, TrainingPlan

WHEN = datetime(2026, 11, 28, 9, 30, tzinfo=UTC)
RUN = RunView(
    id=4, name="pilot", state="running", rounds=3, current_round=2, expected_nodes=["a", "b"],
    min_nodes=1, model=ModelConfig(), plan=TrainingPlan(), privacy=PrivacyPolicy(),
    global_model="0" * 64, created_at=WHEN, detail="round 1 re-opened",
)  # fmt: skip


def _round(**changes: object) -> RoundView:
    fields: dict[str, object] = {
        "run_id": 4, "round": 2, "kind": "train", "state": "open", "attempt": 1,
        "base_model": "0" * 64, "result_model": None, "expected_nodes": ["a", "b"],
        "reported_nodes": ["a"], "declined_nodes": [], "num_samples": 3, "opened_at": WHEN,
        "deadline": WHEN, "closed_at": None, "detail": None, "mean_dice_global": None,
        "mean_dice_local": None, "updates": [],
    }  # fmt: skip
    return RoundView.model_validate({**fields, **changes})


def test_empty_tables_say_what_to_do() -> None:
    assert runs_table([]) == "no runs yet (create one with `fedseg-admin create-run`)"
    assert nodes_table([]) == "no node has announced itself yet"


def test_runs_table_row_and_detail() -> None:
    lines = runs_table([RUN]).splitlines()
    assert lines[2].split() == [
        "4", "pilot", "running", "2/3", "2026-11-28", "09:30", "a,", "b", "(min", "1)",
    ]  # fmt: skip
    assert lines[3] == "      round 1 re-opened"


def test_progress_line_names_who_reported_declined_and_the_attempt() -> None:
    assert progress_line(12.34, RUN, _round()) == (
        "[  12.3s] run 4 round 2/3: open, 1/2 reported (a)"
    )
    line = progress_line(1, RUN, _round(attempt=2, declined_nodes=["b"], detail="deadline"))
    assert (
        line
        == "[   1.0s] run 4 round 2/3: open, 1/2 reported (a), attempt 2, declined: b - deadline"
    )
    evaluation = _round(kind="evaluate", round=4, reported_nodes=[], state="closed")
    assert progress_line(0, RUN, evaluation) == "[   0.0s] run 4 evaluation: closed, 0/2 reported"


def test_run_progress_never_counts_past_the_total() -> None:
    assert run_progress(RUN) == "2/3"
    assert run_progress(RUN.model_copy(update={"current_round": 4})) == "3/3 + evaluation"
    assert run_progress(RUN.model_copy(update={"current_round": None})) == "-/3"


def test_the_open_round_names_who_is_missing_the_deadline_and_an_eta() -> None:
    first = _round(round=1, state="closed", opened_at=WHEN, closed_at=WHEN + timedelta(seconds=100))
    second = _round(opened_at=WHEN + timedelta(seconds=100), deadline=WHEN + timedelta(minutes=10))
    now = WHEN + timedelta(seconds=130)
    assert current_round_line(RUN, [first, second], now) == (
        "round 2 open: missing b; deadline in 7 min 50 s (09:40:00 UTC); "
        "run ETA about 2 min 50 s (from the last 1 rounds)"
    )
    late = current_round_line(RUN, [second], WHEN + timedelta(hours=1))
    assert late == "round 2 open: missing b; deadline passed (09:40:00 UTC)"
    assert current_round_line(RUN, [first], now) is None
