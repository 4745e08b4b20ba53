"""The page in headless Chromium against a scripted aggregator: every panel, and escaping.

The e2e test (tests/e2e/test_dashboard.py) shows a real federation; this one fixes every
number, so it can check the countdown, the ETA, the declines, each node state (failed,
late, offline, revoked) and that text from the API never becomes markup.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from shared.schemas import NodeView, RoundView, RunView
from tests.services.dashboard.browser import Element, chromium, dump_dom
from tests.services.dashboard.conftest import running_proxy

HOSTILE = '<script>document.title="owned"</script><img src=x onerror="document.title=1">'
DECLINE = "remaining budget epsilon 2.5 cannot pay this run's 3 rounds"


def _dice(mean: float) -> dict[str, float]:
    return {"tc": mean, "wt": mean, "et": mean, "mean": mean}


def _update(node: str, at: datetime, dice: float | None, epsilon: float | None) -> dict[str, Any]:
    return {
        "node": node, "status": "accepted", "detail": None, "num_samples": 2,
        "sha256": "0" * 64, "accepted_at": at.isoformat(),
        "metrics": {"dice_global": None if dice is None else _dice(dice),
                    "dice_local": None if dice is None else _dice(dice + 0.1),
                    "protection": "laplace"},
        "privacy": None,
        "privacy_total": None if epsilon is None else {
            "epsilon": epsilon, "delta": 0.0, "releases": 1, "accounting": "SVT"},
    }  # fmt: skip


def _declined(node: str, at: datetime) -> dict[str, Any]:
    return {**_update(node, at, None, None), "status": "declined", "detail": DECLINE}


def _round(number: int, opened: datetime, **fields: Any) -> dict[str, Any]:
    base = {
        "run_id": 2, "round": number, "kind": "train", "state": "closed", "attempt": 1,
        "base_model": "1" * 64, "result_model": None,
        "expected_nodes": ["site-1", "site-2", "site-3"], "reported_nodes": [],
        "declined_nodes": [], "num_samples": 0, "opened_at": opened.isoformat(),
        "deadline": (opened + timedelta(minutes=10)).isoformat(), "closed_at": None,
        "detail": None, "mean_dice_global": None, "mean_dice_local": None, "updates": [],
    }  # fmt: skip
    return RoundView.model_validate({**base, **fields}).model_dump(mode="json")


def _run(
    now: datetime, run_id: int, name: str, state: str, current: int, **fields: Any
) -> dict[str, Any]:
    base = {
        "id": run_id, "name": name, "state": state, "rounds": 3, "current_round": current,
        "expected_nodes": ["site-1", "site-2", "site-3"], "min_nodes": 2,
        "model": {}, "plan": {}, "privacy": {}, "global_model": "1" * 64,
        "created_at": (now - timedelta(minutes=5)).isoformat(), "detail": None,
    }  # fmt: skip
    return RunView.model_validate({**base, **fields}).model_dump(mode="json")


def _node(now: datetime, name: str, state: str, **fields: Any) -> dict[str, Any]:
    base = {
        "name": name, "role": "node", "software_version": "fedseg 0.1.0", "device": "cpu",
        "num_train_cases": None, "last_seen": (now - timedelta(seconds=5)).isoformat(),
        "rounds_joined": 1, "privacy_total": None, "state": state,
    }  # fmt: skip
    return NodeView.model_validate({**base, **fields}).model_dump(mode="json")


SVT = {"mechanism": "svt", "clip": 0.001, "epsilon": 1.0, "metrics": "laplace",
       "metrics_epsilon": 0.25}  # fmt: skip


def scenario(now: datetime) -> dict[str, Any]:
    """The status API's answers: run 2 in round 2 of 3 (opened 10 s ago), five nodes."""
    r1, r2 = now - timedelta(seconds=60), now - timedelta(seconds=10)
    rounds = [
        _round(
            1,
            r1,
            closed_at=(r1 + timedelta(seconds=40)).isoformat(),
            reported_nodes=["site-1", "site-2"],
            declined_nodes=["site-3"],
            mean_dice_global=_dice(0.25),
            updates=[
                _update("site-1", r1 + timedelta(seconds=20), 0.2, 1.5),
                _update("site-2", r1 + timedelta(seconds=30), 0.3, 1.5),
                _declined("site-3", r1 + timedelta(seconds=5)),
            ],
        ),
        _round(
            2,
            r2,
            state="open",
            reported_nodes=["site-1"],
            declined_nodes=["site-3"],
            updates=[
                _update("site-1", r2 + timedelta(seconds=4), 0.5, 3.0),
                _declined("site-3", r2 + timedelta(seconds=1)),
            ],
        ),
    ]
    total = {"epsilon": 3.0, "delta": 0.0, "releases": 2, "accounting": "SVT"}
    nodes = [
        _node(now, "site-1", "ok", privacy_total=total, privacy_epsilon_max=3.0),
        _node(now, "site-2", "late", state_detail="did not report round 2 by its deadline"),
        _node(
            now,
            "site-3",
            "failed",
            state_detail=HOSTILE,
            last_error=HOSTILE,
            last_error_at=now.isoformat(),
        ),
        _node(now, "site-4", "revoked", state_detail="certificate 2a revoked: left the consortium"),
        _node(now, "site-5", "offline", last_seen=(now - timedelta(hours=2)).isoformat()),
    ]
    runs = [
        _run(now, 1, "first", "completed", 4),
        _run(now, 2, "svt-run", "running", 2, privacy=SVT),
    ]
    return {
        "/api/v1/health": {"status": "ok", "version": "0.1.0"},
        "/api/v1/runs": runs,
        "/api/v1/nodes": nodes,
        "/api/v1/runs/2/rounds": rounds,
    }  # fmt: skip


def _render(tmp_path_factory: pytest.TempPathFactory, query: str = "") -> Element:
    chromium()
    answers = scenario(datetime.now(UTC))
    with running_proxy() as proxy:
        for path, body in answers.items():
            proxy.upstream.answers[path] = httpx.Response(200, json=body)
        dom = dump_dom(f"{proxy.base}/dashboard/{query}", tmp_path_factory.mktemp("chromium"))
        assert set(proxy.upstream.seen) == set(answers)  # the page asked for nothing else
    assert dom.one("body").attrs["data-loaded"] == "true", dom.one("body").text
    return dom


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Element:
    """The page as Chromium rendered it, once for the module (each test reads one panel)."""
    return _render(tmp_path_factory)


def _series(chart: Element) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(chart.attrs["data-series"])
    return result


def test_page_lists_runs_and_shows_the_newest_active_one(page: Element) -> None:
    rows = page.by_id("runs-body").find_all("tr")
    assert [(r.attrs["data-run-id"], r.attrs["data-state"]) for r in rows] == [
        ("2", "running"), ("1", "completed")]  # fmt: skip
    assert rows[0].attrs["class"] == "selected"
    assert rows[0].one("td", **{"class": "progress"}).text == "2/3 rounds"
    assert rows[1].one("td", **{"class": "progress"}).text == "3/3 rounds + evaluation"
    assert "SVT, ε 1 per round" in rows[0].text


def test_page_shows_who_reported_the_countdown_and_the_eta(page: Element) -> None:
    assert page.by_id("round-title").text == "run 2 (svt-run) · round 2 of 3"
    assert page.by_id("round-state").attrs["data-state"] == "open"
    progress = page.by_id("round-progress")
    assert (progress.attrs["data-reported"], progress.attrs["data-expected"]) == ("1", "3")
    assert progress.attrs["data-declined"] == "1"
    status = {li.attrs["data-node"]: li.attrs["data-status"] for li in page.find_all("li")
              if "data-status" in li.attrs}  # fmt: skip
    assert status == {"site-1": "reported", "site-2": "waiting", "site-3": "declined"}
    assert page.one("li", data_node="site-1", data_status="reported").text == (
        "site-1 reported after 4 s"
    )
    assert DECLINE in page.one("li", data_node="site-3", data_status="declined").text
    countdown = page.by_id("deadline-countdown").text
    assert countdown.startswith("deadline in 9 min "), countdown
    eta = page.by_id("eta")
    assert eta.attrs["data-mean-round-s"] == "40.0"  # round 1: opened to closed
    # This round ~30 s more, then round 3 and the evaluation at the recent pace.
    assert 100 <= float(eta.attrs["data-run-eta-s"]) <= 112
    assert "(mean of the last 1 round: 40 s)" in eta.text


def test_page_plots_dice_per_round_global_and_per_node(page: Element) -> None:
    chart = page.by_id("dice-chart")
    assert chart.attrs["data-measure"] == "global"
    assert _series(chart) == [
        {"name": "mean over nodes", "points": [[1, 0.25]]},
        {"name": "site-1", "points": [[1, 0.2], [2, 0.5]]},
        {"name": "site-2", "points": [[1, 0.3]]},
    ]
    dots = chart.find_all("circle")
    assert [(d.attrs["data-x"], d.attrs["data-y"]) for d in dots] == [
        ("1", "0.25"), ("1", "0.2"), ("2", "0.5"), ("1", "0.3")]  # fmt: skip


def test_page_plots_dice_after_local_training_when_asked(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    chart = _render(tmp_path_factory, "?dice=local").by_id("dice-chart")
    assert chart.attrs["data-measure"] == "local"
    assert _series(chart) == [  # round 1 has no mean of local Dice: it is not plotted
        {"name": "site-1", "points": [[1, 0.2 + 0.1], [2, 0.5 + 0.1]]},
        {"name": "site-2", "points": [[1, 0.3 + 0.1]]},
    ]


def test_page_plots_cumulative_epsilon_against_the_policy_and_lists_declines(
    page: Element,
) -> None:
    chart = page.by_id("epsilon-chart")
    assert _series(chart) == [
        {"name": "site-1", "points": [[1, 1.5], [2, 3.0]]},
        {"name": "site-2", "points": [[1, 1.5]]},
    ]
    assert json.loads(chart.attrs["data-ref-lines"]) == [
        {"y": 3, "label": "policy: 3 × ε 1 = 3"}]  # fmt: skip
    declines = page.by_id("declines").find_all("li")
    assert [(d.attrs["data-round"], d.attrs["data-node"]) for d in declines] == [
        ("1", "site-3"), ("2", "site-3")]  # fmt: skip
    assert declines[0].text == f"round 1: site-3 declined: {DECLINE}"


def test_page_charts_round_durations(page: Element) -> None:
    bars = _series(page.by_id("durations-chart"))
    assert bars[0] == {"label": "1", "value": 40}
    assert bars[1]["label"] == "2 (open)"
    assert 9 <= bars[1]["value"] <= 20


def test_page_shows_each_node_state_and_escapes_api_text(page: Element) -> None:
    rows = {r.attrs["data-node"]: r for r in page.by_id("nodes-body").find_all("tr")}
    assert {n: r.attrs["data-state"] for n, r in rows.items()} == {
        "site-1": "ok", "site-2": "late", "site-3": "failed", "site-4": "revoked",
        "site-5": "offline"}  # fmt: skip
    chips = {n: r.one("span", **{"class": "chip"}).text for n, r in rows.items()}
    assert chips["site-3"] == f"failed: {HOSTILE}"  # as text, not as markup
    assert chips["site-4"] == "revoked"
    assert "certificate 2a revoked: left the consortium" in rows["site-4"].text
    assert "did not report round 2 by its deadline" in rows["site-2"].text
    assert rows["site-5"].find_all("td")[2].text == "2 h 00 min ago"
    assert rows["site-1"].one("td", **{"class": "epsilon"}).text == "3 (2 releases)"
    assert HOSTILE in rows["site-3"].one("td", **{"class": "detail last-error"}).text
    # Only the page's own scripts exist, no <img> was made, and the title is intact.
    scripts = [s.attrs.get("src") for s in page.find_all("script")]
    assert scripts == ["charts.js", "model.js", "dashboard.js"]
    assert page.find_all("img") == []
    assert page.one("head").one("title").text == "fedseg dashboard"
