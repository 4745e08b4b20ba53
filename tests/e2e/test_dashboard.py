"""The dashboard in headless Chromium over a real federation: aggregator, nodes, proxy.

Every party is a real process speaking mutual TLS; ``fedseg-admin dashboard`` runs as a
subprocess and the browser reaches the aggregator only through it. The page is read twice:
mid-round (one node reported, one awaited) and after the run (charts complete), and the
second time it is also photographed (tmp_path and var/test-artifacts/dashboard.png).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.dashboard.assets import ASSET_NAMES, asset
from services.demo.processes import Kit, node_env, spawn, stop
from services.node.data.synthetic_sites import write_site
from shared.identity import identity_from_certificate
from shared.model import ModelConfig
from shared.pki import bootstrap, load_certificate
from shared.schemas import (
    PROTOCOL_VERSION,
    Announcement,
    Mechanism,
    MetricsRelease,
    NodeView,
    PrivacyPolicy,
    RoundView,
    RunCreate,
    RunView,
    TrainingPlan,
)
from tests.e2e.conftest import AggregatorProcess, start_aggregator
from tests.services.dashboard.browser import ARTIFACTS, Element, chromium, dump_dom, screenshot

pytestmark = pytest.mark.slow

TRAINING = ["site-1", "site-2"]
REVOKED, CRASHED = "site-3", "site-4"
SVT = PrivacyPolicy(
    mechanism=Mechanism.SVT, fraction=0.1, clip=1e-3, epsilon=1000.0,
    metrics=MetricsRelease.LAPLACE, metrics_epsilon=50.0,
)  # fmt: skip


class Federation:
    """The aggregator, its admin client, and helpers that start parties under one ExitStack."""

    def __init__(self, root: Path, stack: ExitStack) -> None:
        self.root = root
        self.pki = root / "pki"
        bootstrap(self.pki, nodes=[*TRAINING, REVOKED, CRASHED], admins=["admin"])
        self.agg: AggregatorProcess = start_aggregator(self.pki, root)
        stack.callback(stop, self.agg.process)
        self.admin = stack.enter_context(self.agg.client("admin"))
        self.stack = stack

    def node(self, name: str, data: Path) -> subprocess.Popen[bytes]:
        env = node_env(Kit.of(self.pki, name), self.agg.url, data, self.root / "nodes" / name,
                       OMP_NUM_THREADS="1", FEDSEG_VAL_FRACTION="0.34")  # fmt: skip
        process = spawn("services.node.main", env, self.root / f"{name}.log")
        self.stack.callback(stop, process)
        return process

    def dashboard(self) -> str:
        """Start ``fedseg-admin dashboard`` on a free port; its page's URL."""
        kit, log = Kit.of(self.pki, "admin"), self.root / "dashboard.log"
        args = ["--url", self.agg.url, "--ca", str(kit.ca), "--cert", str(kit.cert),
                "--key", str(kit.key), "dashboard", "--port", "0"]  # fmt: skip
        process = spawn("services.admin.main", {}, log, args)
        self.stack.callback(stop, process)
        found = _until(lambda: re.search(r"dashboard on (http://\S+)", log.read_text()), 30)
        return str(found[1])

    def rounds(self) -> list[RoundView]:
        return [RoundView.model_validate(r) for r in self.admin.get("/api/v1/rounds").json()]

    def nodes(self) -> dict[str, NodeView]:
        views = [NodeView.model_validate(n) for n in self.admin.get("/api/v1/nodes").json()]
        return {n.name: n for n in views}

    def run(self) -> RunView:
        return RunView.model_validate(self.admin.get("/api/v1/runs/1").json())


def _until(check: Callable[[], Any], timeout: float, what: str = "") -> Any:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if found := check():
            return found
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout} s: {what or check}")


@pytest.fixture
def federation(tmp_path: Path) -> Iterator[Federation]:
    chromium()  # skip, loudly, before any process starts
    with ExitStack() as stack:
        yield Federation(tmp_path, stack)


def _series(chart: Element) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = json.loads(chart.attrs["data-series"])
    return result


def _node_states(page: Element) -> dict[str, tuple[str, str]]:
    rows = page.by_id("nodes-body").find_all("tr")
    return {r.attrs["data-node"]: (r.attrs["data-state"], r.one("span", **{"class": "chip"}).text)
            for r in rows}  # fmt: skip


def test_dashboard_shows_a_live_federation_in_chromium(
    federation: Federation, tmp_path: Path
) -> None:
    fed = federation
    request = RunCreate(
        name="dashboard", rounds=2, expected_nodes=TRAINING, min_nodes=2, round_timeout_s=300,
        model=ModelConfig(init_filters=8), privacy=SVT,
        plan=TrainingPlan(max_steps=2, learning_rate=1e-3, crop_size=(24, 24, 24), seed=1),
    )  # fmt: skip
    assert fed.admin.post("/api/v1/runs", json=request.model_dump(mode="json")).status_code == 201
    # site-3 announces itself, then its certificate is revoked.
    with fed.agg.client(REVOKED) as revoked:
        hello = Announcement(protocol=PROTOCOL_VERSION, software_version="fedseg", device="cpu")
        assert revoked.post("/api/v1/nodes/announce", json=hello.model_dump()).status_code == 200
    serial = identity_from_certificate(load_certificate(fed.pki / f"{REVOKED}.pem")).serial
    revocation = {"serial": f"{serial:x}", "name": REVOKED, "reason": "left the consortium"}
    assert fed.admin.post("/api/v1/revocations", json=revocation).status_code == 204
    # site-4 starts on an empty data folder: it tells the aggregator why, and exits.
    (tmp_path / "data" / CRASHED).mkdir(parents=True)
    crashed = fed.node(CRASHED, tmp_path / "data" / CRASHED)
    assert crashed.wait(120) != 0, (tmp_path / f"{CRASHED}.log").read_text()
    for index, name in enumerate(TRAINING, start=1):
        write_site(tmp_path / "data" / name, index, 3, (24, 24, 24), seed=5)
    url = fed.dashboard()

    # Mid-round: site-1 has reported round 1, site-2 has not started yet.
    fed.node("site-1", tmp_path / "data" / "site-1")
    _until(lambda: (r := fed.rounds()) and r[0].reported_nodes == ["site-1"], 180, "site-1")
    page = dump_dom(url, tmp_path / "chromium")
    nodes = fed.nodes()
    screenshot(url, tmp_path / "chromium", tmp_path / "dashboard-round-1.png")
    assert page.one("body").attrs["data-loaded"] == "true"
    run_row = page.by_id("runs-body").one("tr", data_run_id="1")
    assert run_row.attrs["data-state"] == "running"
    assert run_row.one("td", **{"class": "progress"}).text == "1/2 rounds"
    assert page.by_id("round-title").text == "run 1 (dashboard) · round 1 of 2"
    assert page.by_id("round-state").attrs["data-state"] == "open"
    progress = page.by_id("round-progress")
    assert (progress.attrs["data-reported"], progress.attrs["data-expected"]) == ("1", "2")
    assert page.one("li", data_node="site-1").attrs["data-status"] == "reported"
    assert page.one("li", data_node="site-2").attrs["data-status"] == "waiting"
    assert page.by_id("deadline-countdown").text.startswith("deadline in 4 min ")
    states = _node_states(page)
    assert states[REVOKED] == ("revoked", "revoked")
    failure = nodes[CRASHED].state_detail
    assert nodes[CRASHED].state == "failed"
    assert failure
    assert states[CRASHED] == ("failed", f"failed: {failure}")
    assert states["site-1"][0] == nodes["site-1"].state
    assert "site-2" not in nodes  # not started yet: the page lists it from the run
    assert states["site-2"] == ("unseen", "not seen yet")

    # The run completes once site-2 joins; the charts then hold every round.
    fed.node("site-2", tmp_path / "data" / "site-2")
    _until(lambda: fed.run().state != "running", 300, "the run to end")
    assert fed.run().state == "completed"
    rounds, nodes = fed.rounds(), fed.nodes()
    page = dump_dom(url, tmp_path / "chromium")
    shot = tmp_path / "dashboard.png"
    screenshot(url, tmp_path / "chromium", shot)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, ARTIFACTS / "dashboard.png")
    shutil.copyfile(tmp_path / "dashboard-round-1.png", ARTIFACTS / "dashboard-round-1.png")

    run_row = page.by_id("runs-body").one("tr", data_run_id="1")
    assert run_row.attrs["data-state"] == "completed"
    assert run_row.one("td", **{"class": "progress"}).text == "2/2 rounds + evaluation"
    title = "run 1 (dashboard) · evaluation of the final model (after 2 rounds)"
    assert page.by_id("round-title").text == title
    assert page.by_id("round-state").attrs["data-state"] == "closed"
    assert page.by_id("eta").text.startswith("run completed in ")
    dice: dict[str, list[list[float]]] = {"mean over nodes": []}
    epsilon: dict[str, list[list[float]]] = {}
    for r in rounds:
        if r.mean_dice_global is not None:
            dice["mean over nodes"].append([r.round, r.mean_dice_global.mean])
        for u in r.updates:
            if u.metrics.dice_global is not None:
                dice.setdefault(u.node, []).append([r.round, u.metrics.dice_global.mean])
            if u.privacy_total is not None and u.privacy_total.epsilon is not None:
                epsilon.setdefault(u.node, []).append([r.round, u.privacy_total.epsilon])
    assert [len(dice[n]) for n in ["mean over nodes", *TRAINING]] == [3, 3, 3]  # 2 + eval
    assert _series(page.by_id("dice-chart")) == [{"name": k, "points": v} for k, v in dice.items()]
    assert sorted(epsilon) == TRAINING
    assert [len(epsilon[n]) for n in TRAINING] == [3, 3]
    assert all(epsilon[n][-1][1] > epsilon[n][0][1] > 1000 for n in TRAINING)
    assert _series(page.by_id("epsilon-chart")) == [
        {"name": n, "points": epsilon[n]} for n in TRAINING
    ]
    assert json.loads(page.by_id("epsilon-chart").attrs["data-ref-lines"]) == [
        {"y": 2000, "label": "policy: 2 × ε 1000 = 2000"}
    ]
    bars = _series(page.by_id("durations-chart"))
    assert [b["label"] for b in bars] == ["1", "2", "eval"]
    for bar, r in zip(bars, rounds, strict=True):
        assert r.closed_at is not None
        assert bar["value"] == pytest.approx((r.closed_at - r.opened_at).total_seconds(), abs=0.2)
    states = _node_states(page)
    assert set(states) == set(nodes) == {*TRAINING, REVOKED, CRASHED}
    for name, view in nodes.items():
        assert states[name][0] == view.state, name
    assert states[REVOKED] == ("revoked", "revoked")
    assert states[CRASHED] == ("failed", f"failed: {failure}")
    for name in TRAINING:
        total = nodes[name].privacy_total
        assert total is not None
        assert total.epsilon is not None
        cell = page.by_id("nodes-body").one("tr", data_node=name).one("td", **{"class": "epsilon"})
        assert cell.text == f"{round(total.epsilon)} ({total.releases} releases)"
    # The page only ever read through the proxy, which forwards reads only.
    assert httpx.post(url.replace("/dashboard/", "/api/v1/runs")).status_code == 405


def test_aggregator_serves_the_page_itself_over_mutual_tls(aggregator: AggregatorProcess) -> None:
    with aggregator.client("site-1") as browser:  # what a browser with an imported cert does
        page = browser.get("/dashboard/")
        assert (page.status_code, page.content) == (200, asset("index.html").body)
        assert page.headers["content-security-policy"].startswith("default-src 'self'")
        for name in ASSET_NAMES:
            answer = browser.get(f"/dashboard/{name}")
            assert (answer.status_code, answer.content) == (200, asset(name).body), name
        assert browser.get("/dashboard/main.py").status_code == 404
