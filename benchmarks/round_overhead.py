"""The federation's serving cost with nodes that do no training, in real rounds.

Real processes on loopback with mutual TLS: one aggregator under uvicorn and N idle nodes
(each downloads the 4.7 M-parameter model and uploads a full-size delta every round; they
run at a lower CPU priority, as if on their own machines). For every N it measures,
against a baseline from the same run:

- seconds per round, against the physical floor: the same 2N transfers of the model's
  bytes over a plain loopback TLS socket, one after another;
- the aggregator's peak RSS (VmHWM) over the whole run, against the figure at the
  smallest N (memory should be O(model), not O(nodes));
- the latency of status queries (runs, rounds, nodes, metrics) asked by four operator
  clients while the nodes upload, against the same queries once the nodes are gone.

    python -m benchmarks.round_overhead [--nodes 8 16 32] [--rounds 4]
"""

from __future__ import annotations

import argparse
import math
import socket
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from services.demo.processes import Kit, aggregator_env, free_port, spawn, stop, wait_healthy
from shared.model import ModelConfig, initial_state
from shared.pki import bootstrap
from shared.schemas import RoundView, RunCreate, RunView
from shared.tensors import to_bytes
from shared.tls import client_ssl_context, server_ssl_context

STATUS_PATHS = ("/api/v1/runs", "/api/v1/rounds", "/api/v1/nodes", "/api/v1/metrics")
PROBERS = 4


def tls_floor(pki: Path, payload: bytes, transfers: int) -> float:
    """Seconds to move ``payload`` ``transfers`` times over one loopback mTLS connection."""
    server_ctx = server_ssl_context(
        pki / "aggregator.pem", pki / "aggregator-key.pem", pki / "ca.pem"
    )
    client_ctx = client_ssl_context(pki / "site-1.pem", pki / "site-1-key.pem", pki / "ca.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    size = len(payload)

    def serve() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            for _ in range(transfers):
                got = 0
                while got < size:
                    got += len(tls.recv(1 << 20))
                tls.sendall(b"k")

    thread = threading.Thread(target=serve)
    thread.start()
    with (
        socket.create_connection(("127.0.0.1", port)) as raw,
        client_ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        start = time.perf_counter()
        for _ in range(transfers):
            tls.sendall(payload)
            tls.recv(1)
        elapsed = time.perf_counter() - start
    thread.join()
    listener.close()
    return elapsed


class Prober:
    """Operator clients asking for status in a loop; latencies in seconds, per phase."""

    def __init__(self, kit: Kit, url: str) -> None:
        self.kit = kit
        self.url = url
        self.phase = "startup"
        self.samples: dict[str, list[float]] = {}
        self.errors = 0
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._loop, args=(i,)) for i in range(PROBERS)]

    def __enter__(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()

    def _loop(self, offset: int) -> None:
        with self.kit.http(self.url, timeout=60) as http:
            i = offset
            while not self._stop.is_set():
                path = STATUS_PATHS[i % len(STATUS_PATHS)]
                i += 1
                phase = self.phase
                start = time.perf_counter()
                try:
                    ok = http.get(path).status_code == 200
                except Exception:
                    ok = False
                elapsed = time.perf_counter() - start
                if ok:
                    self.samples.setdefault(phase, []).append(elapsed)
                else:
                    self.errors += 1
                time.sleep(0.05)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass(frozen=True)
class Figures:
    nodes: int
    rounds: list[float]
    closing: list[float]
    """Seconds from each round's last accepted update to its close (the aggregation)."""
    peak_rss_mib: float
    busy: list[float]
    idle: list[float]
    errors: int
    loop_lag_s: float
    route_seconds: dict[str, float]

    @property
    def per_round(self) -> float:
        steady = self.rounds[1:] or self.rounds
        return sum(steady) / len(steady)


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


def federation(pki: Path, work: Path, names: list[str], rounds: int) -> Figures:
    """One aggregator and ``names`` idle nodes through a ``rounds``-round run."""
    port = free_port()
    url = f"https://127.0.0.1:{port}"
    log = work / "aggregator.log"
    agg = spawn("services.aggregator.server",
                aggregator_env(Kit.of(pki, "aggregator"), work / "state", port), log)  # fmt: skip
    nodes = []
    try:
        admin = Kit.of(pki, "admin").http(url)
        wait_healthy(admin, agg, log)
        nodes = [
            spawn("benchmarks.idle_node", {}, work / f"{name}.log", args=(str(pki), name, url))
            for name in names
        ]
        # Start timing only once every node has imported torch and announced itself.
        while len(admin.get("/api/v1/nodes").json()) < len(names):
            time.sleep(0.5)
        with Prober(Kit.of(pki, "admin"), url) as prober:
            run = RunCreate(
                rounds=rounds, expected_nodes=names, min_nodes=len(names), model=ModelConfig()
            )
            response = admin.post("/api/v1/runs", json=run.model_dump(mode="json"))
            response.raise_for_status()
            run_id = RunView.model_validate(response.json()).id
            prober.phase = "busy"
            while (
                RunView.model_validate(admin.get(f"/api/v1/runs/{run_id}").json()).state
                == "running"
            ):
                time.sleep(0.5)
            for p in nodes:
                stop(p)
            prober.phase = "idle"
            time.sleep(5)
        history = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()]
        peak = peak_rss_mib(agg.pid)
        metrics = admin.get("/api/v1/metrics").text
        lag = loop_lag(metrics)
        routes = route_seconds(metrics)
    finally:
        for p in nodes:
            stop(p)
        stop(agg)
    train = [r for r in history if r.kind == "train" and r.closed_at is not None]
    closing = [
        (r.closed_at - max(u.accepted_at for u in r.updates)).total_seconds()
        for r in train
        if r.closed_at and r.updates
    ]
    return Figures(
        nodes=len(names),
        rounds=[(r.closed_at - r.opened_at).total_seconds() for r in train if r.closed_at],
        closing=closing,
        peak_rss_mib=peak,
        busy=prober.samples.get("busy", []),
        idle=prober.samples.get("idle", []),
        errors=prober.errors,
        loop_lag_s=lag,
        route_seconds=routes,
    )


def route_seconds(metrics: str) -> dict[str, float]:
    """Mean seconds per request of the routes a round is made of."""
    sums: dict[str, float] = {}
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if not any(route.endswith(r) for r in ("/models/{sha256}", "/update", "/tasks/next")):
                continue
            if sample.name == "fedseg_http_request_duration_seconds_sum":
                sums[route] = sums.get(route, 0.0) + sample.value
            elif sample.name == "fedseg_http_request_duration_seconds_count":
                counts[route] = counts.get(route, 0.0) + sample.value
    return {r.rsplit("/", 1)[-1]: sums[r] / counts[r] for r in sums if counts.get(r)}


def loop_lag(metrics: str) -> float:
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "fedseg_event_loop_lag_max_seconds":
                return float(sample.value)
    return math.nan


def _ms(values: list[float], q: float) -> str:
    return f"{percentile(values, q) * 1e3:.0f} ms" if values else "n/a"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fedseg-overhead-"))
    names = [f"node-{i:02d}" for i in range(max(args.nodes))]
    pki = work / "pki"
    bootstrap(pki, nodes=[*names, "site-1"], admins=["admin"])
    payload = to_bytes(initial_state(ModelConfig(), 0))
    print(f"model: {len(payload) / 1e6:.1f} MB; rounds per run: {args.rounds}; "
          f"status clients: {PROBERS}, each asking {', '.join(STATUS_PATHS)} in turn")  # fmt: skip
    results: list[Figures] = []
    for n in args.nodes:
        figures = federation(pki, work / f"n{n}", names[:n], args.rounds)
        results.append(figures)
        floor = tls_floor(pki, payload, 2 * n)
        print(f"\n{n} nodes:")
        print("  seconds per round:", ", ".join(f"{s:.2f}" for s in figures.rounds))
        print("  of which last update to close:",
              ", ".join(f"{s:.2f}" for s in figures.closing))  # fmt: skip
        print(f"  steady-state round {figures.per_round:.2f} s; floor ({2 * n} sequential "
              f"transfers over loopback mTLS) {floor:.2f} s; round / floor "
              f"{figures.per_round / floor:.2f}x (target <= 1.5x at 8 nodes)")  # fmt: skip
        print(f"  aggregator peak RSS {figures.peak_rss_mib:.0f} MiB; longest event-loop "
              f"stall {figures.loop_lag_s * 1e3:.0f} ms")  # fmt: skip
        print("  mean seconds per request: " + ", ".join(
            f"{route} {s:.2f}" for route, s in sorted(figures.route_seconds.items())))  # fmt: skip
        print(f"  status while uploading: p50 {_ms(figures.busy, 0.5)}, p99 "
              f"{_ms(figures.busy, 0.99)} ({len(figures.busy)} queries); idle: p50 "
              f"{_ms(figures.idle, 0.5)}, p99 {_ms(figures.idle, 0.99)} "
              f"({len(figures.idle)} queries); {figures.errors} failed")  # fmt: skip
    smallest, largest = results[0], results[-1]
    print(f"\npeak RSS at {largest.nodes} / at {smallest.nodes} nodes: "
          f"{largest.peak_rss_mib / smallest.peak_rss_mib:.2f}x "
          "(target <= 1.2x, 32 / 8)")  # fmt: skip
    for figures in results:
        if figures.busy and figures.idle:
            print(f"status p50 under {figures.nodes} uploading nodes / idle: "
                  f"{statistics.median(figures.busy) / statistics.median(figures.idle):.1f}x; "
                  f"p50 {_ms(figures.busy, 0.5)}, p99 {_ms(figures.busy, 0.99)} "
                  "(target p50 <= 50 ms, p99 <= 250 ms at 16)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
