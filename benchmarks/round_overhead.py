"""Seconds per round with nodes that do no training: the federation's coordination cost.

Real processes on loopback with mutual TLS: one aggregator under uvicorn and N idle nodes
(each downloads the 4.7 M-parameter model and uploads a full-size delta every round).
The baseline in the same run is the physical floor: the same 2N transfers of the model's
bytes over a plain loopback TLS socket, one after another.

    python -m benchmarks.round_overhead [--nodes 8] [--rounds 4]
"""

from __future__ import annotations

import argparse
import socket
import tempfile
import threading
import time
from pathlib import Path

from services.demo.processes import Kit, aggregator_env, free_port, spawn, stop, wait_healthy
from shared.model import ModelConfig, initial_state
from shared.pki import bootstrap
from shared.schemas import RoundView, RunCreate, RunView
from shared.tensors import to_bytes
from shared.tls import client_ssl_context, server_ssl_context


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="fedseg-overhead-"))
    names = [f"node-{i:02d}" for i in range(args.nodes)]
    pki = work / "pki"
    bootstrap(pki, nodes=[*names, "site-1"], admins=["admin"])
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
        while len(admin.get("/api/v1/nodes").json()) < args.nodes:
            time.sleep(0.5)
        run = RunCreate(
            rounds=args.rounds, expected_nodes=names, min_nodes=args.nodes, model=ModelConfig()
        )
        response = admin.post("/api/v1/runs", json=run.model_dump(mode="json"))
        response.raise_for_status()
        run_id = RunView.model_validate(response.json()).id
        while RunView.model_validate(admin.get(f"/api/v1/runs/{run_id}").json()).state == "running":
            time.sleep(0.5)
        rounds = [RoundView.model_validate(r) for r in admin.get("/api/v1/rounds").json()]
    finally:
        for p in nodes:
            stop(p)
        stop(agg)
    train = [r for r in rounds if r.kind == "train" and r.closed_at is not None]
    seconds = [(r.closed_at - r.opened_at).total_seconds() for r in train if r.closed_at]
    steady = seconds[1:] or seconds
    per_round = sum(steady) / len(steady)
    payload = to_bytes(initial_state(ModelConfig(), 0))
    floor = tls_floor(pki, payload, 2 * args.nodes)
    print(f"model: {len(payload) / 1e6:.1f} MB; nodes: {args.nodes}; rounds: {len(train)}")
    print("seconds per round:", ", ".join(f"{s:.2f}" for s in seconds))
    print(f"steady-state round: {per_round:.2f} s (target <= 1.5 s at 8 nodes)")
    print(f"floor, {2 * args.nodes} sequential transfers over loopback mTLS: {floor:.2f} s "
          f"({2 * args.nodes * len(payload) / floor / 1e6:.0f} MB/s)")  # fmt: skip
    print(f"round / floor: {per_round / floor:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
