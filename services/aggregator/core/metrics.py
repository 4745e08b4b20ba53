"""Prometheus metrics, generated with ``prometheus_client`` (so ``promtool`` accepts them).

Two sources, one registry per app:

- ``Traffic``: what this process served since it started (requests by route and status,
  latency histograms, bytes in and out, refused uploads by error code). Counters restart
  at zero with the process, as Prometheus expects of counters.
- ``StateCollector``: read from the database at each scrape (rounds by state, accepted
  updates, round durations, node health and privacy spent), so it survives restarts and
  is the same whichever aggregator process answers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.schemas import NodeState, NodeView, RoundState, RoundView, RunView, UpdateStatus

# No ``_created`` twin of every counter: half the series, the same information.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
ROUND_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0)
UPLOAD_SUFFIXES = ("/update", "/evaluation", "/decline")
COUNTED = (UpdateStatus.ACCEPTED, UpdateStatus.EXCLUDED)
"""Routes whose refusals count as rejected updates."""


class Traffic:
    """Counters and histograms of the requests this process served."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "fedseg_http_requests", "HTTP requests served, by route template, method and status.",
            ["route", "method", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "fedseg_http_request_duration_seconds",
            "Time from request to the last response byte, by route template and method "
            "(the upload route is the update-upload latency, models/{sha256} the download).",
            ["route", "method"], buckets=LATENCY_BUCKETS, registry=registry,
        )  # fmt: skip
        self.received = Counter(
            "fedseg_http_received_bytes", "Request body bytes received, by route template.",
            ["route"], registry=registry,
        )  # fmt: skip
        self.sent = Counter(
            "fedseg_http_sent_bytes", "Response body bytes sent, by route template.",
            ["route"], registry=registry,
        )  # fmt: skip
        self.rejected = Counter(
            "fedseg_updates_rejected",
            "Uploads (updates, evaluations, declines) refused, by error code.",
            ["code"], registry=registry,
        )  # fmt: skip

    def reject(self, scope: Scope, code: str) -> None:
        """Count a refused upload, by its code only: a label taken from the request (a run
        id in the path) would let any client create series without end."""
        if route_of(scope).endswith(UPLOAD_SUFFIXES):
            self.rejected.labels(code=code).inc()


def route_of(scope: Scope) -> str:
    """The matched route's whole template, e.g. ``/api/v1/models/{sha256}`` (bounded
    cardinality), or "unmatched".

    The route knows its template below the router it was included with; the prefix is what
    the request's path has in front of that template filled in with the path parameters.
    """
    route = scope.get("route")
    template = getattr(route, "path", None) if isinstance(route, BaseRoute) else None
    if not template:
        return "unmatched"
    path = str(scope.get("path", ""))
    try:
        filled = str(template).format(**(scope.get("path_params") or {}))
    except (KeyError, IndexError, ValueError):
        return str(template)
    prefix = path[: -len(filled)] if filled and path.endswith(filled) else ""
    return f"{prefix}{template}"


class TrafficMiddleware:
    """ASGI middleware feeding ``Traffic`` (pure ASGI: streamed bodies stay streamed)."""

    def __init__(self, app: ASGIApp, traffic: Traffic) -> None:
        self.app = app
        self.traffic = traffic

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        received = sent = 0
        status = 500

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal sent, status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            elif message["type"] == "http.response.body":
                sent += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        finally:
            route = route_of(scope)
            method = str(scope.get("method", ""))
            self.traffic.requests.labels(route, method, str(status)).inc()
            self.traffic.latency.labels(route, method).observe(time.perf_counter() - started)
            self.traffic.received.labels(route).inc(received)
            self.traffic.sent.labels(route).inc(sent)


class StateSource(Protocol):
    """What ``StateCollector`` reads (the Federation's status methods)."""

    def list_runs(self) -> list[RunView]: ...
    def list_rounds(self, run_id: int | None = None) -> list[RoundView]: ...
    def list_nodes(self) -> list[NodeView]: ...


class StateCollector(Collector):
    """Metrics read from the federation's durable state at scrape time."""

    def __init__(self, source: StateSource) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        runs = self.source.list_runs()
        yield from _run_metrics(runs, {r.id: self.source.list_rounds(r.id) for r in runs})
        yield from _node_metrics(self.source.list_nodes())


def _run_metrics(runs: list[RunView], rounds: dict[int, list[RoundView]]) -> Iterator[Metric]:
    info = GaugeMetricFamily(
        "fedseg_run_info", "1 for each run, labelled with its name and state.",
        labels=["run", "name", "state"],
    )  # fmt: skip
    current = GaugeMetricFamily(
        "fedseg_run_current_round", "The round a run is on (or ended on).", labels=["run"]
    )
    by_state = GaugeMetricFamily(
        "fedseg_rounds", "Rounds of each run by state.", labels=["run", "state"]
    )
    accepted = CounterMetricFamily(
        "fedseg_updates_accepted", "Updates and evaluations accepted, by run.", labels=["run"]
    )
    reported = GaugeMetricFamily(
        "fedseg_round_reported_nodes", "Nodes that have reported in a run's newest round.",
        labels=["run"],
    )  # fmt: skip
    durations = HistogramMetricFamily(
        "fedseg_round_duration_seconds", "Seconds from open to close of each closed round.",
        labels=["run"],
    )  # fmt: skip
    for run in runs:
        label = str(run.id)
        found = rounds.get(run.id, [])
        info.add_metric([label, run.name, run.state.value], 1.0)
        current.add_metric([label], float(run.current_round or 0))
        for state in RoundState:
            by_state.add_metric([label, state.value], sum(1 for r in found if r.state == state))
        # Accepted ever, so the counter never falls when a node is removed (excluded).
        accepted.add_metric([label], float(sum(
            1 for r in found for u in r.updates if u.status in COUNTED
        )))  # fmt: skip
        if found:
            reported.add_metric([label], float(len(found[-1].reported_nodes)))
        seconds = [
            (r.closed_at - r.opened_at).total_seconds()
            for r in found
            if r.state == RoundState.CLOSED and r.closed_at is not None
        ]
        buckets = [(str(b), float(sum(1 for s in seconds if s <= b))) for b in ROUND_BUCKETS]
        buckets.append(("+Inf", float(len(seconds))))
        durations.add_metric([label], buckets, sum_value=sum(seconds))
    yield from (info, current, by_state, accepted, reported, durations)


def _node_metrics(nodes: list[NodeView]) -> Iterator[Metric]:
    last_seen = GaugeMetricFamily(
        "fedseg_node_last_seen_timestamp_seconds", "When each node was last seen (Unix time).",
        labels=["node"],
    )  # fmt: skip
    epsilon = GaugeMetricFamily(
        "fedseg_node_privacy_epsilon",
        "Each node's cumulative epsilon as its own ledger reports it (all runs).",
        labels=["node"],
    )
    joined = GaugeMetricFamily(
        "fedseg_node_rounds_joined", "Rounds each node contributed to.", labels=["node"]
    )
    state = GaugeMetricFamily(
        "fedseg_node_state", "1 for each node's current state.", labels=["node", "state"]
    )
    by_state = GaugeMetricFamily("fedseg_nodes", "Nodes by state.", labels=["state"])
    for node in nodes:
        if node.last_seen is not None:
            last_seen.add_metric([node.name], node.last_seen.timestamp())
        total = node.privacy_total
        if total is not None and total.epsilon is not None:
            epsilon.add_metric([node.name], total.epsilon)
        joined.add_metric([node.name], float(node.rounds_joined))
        state.add_metric([node.name, node.state.value], 1.0)
    for kind in NodeState:
        by_state.add_metric([kind.value], float(sum(1 for n in nodes if n.state == kind)))
    yield from (last_seen, epsilon, joined, state, by_state)


def new_registry(source: StateSource) -> tuple[CollectorRegistry, Traffic]:
    """A registry of this app's own (not the process-global one, so apps never collide)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StateCollector(source))
    return registry, Traffic(registry)
