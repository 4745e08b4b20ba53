"""Aggregator peak memory while aggregating N updates of the 4.7 M-parameter model.

Each N runs in a fresh process, so every figure is that process's own high-water mark.
The baseline in the same run is a naive FedAvg that loads every update before averaging
(what a non-streaming server does); fedseg's streaming FedAvg should stay flat in N, and
so should FedAdam (O(model)). The coordinate-wise robust strategies (trimmed mean, median)
read the updates one tensor at a time, so they grow by about K times the largest tensor
(not K times the model): a bounded, reported growth.

    python -m benchmarks.aggregator_memory [--nodes 4 16 32] [--strategies ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def child(nodes: int, mode: str) -> dict[str, float]:
    import torch

    from services.aggregator.core.blobs import BlobStore
    from services.aggregator.core.db import make_engine
    from services.aggregator.federation import Federation
    from services.aggregator.state.updates import Received
    from shared.identity import Identity, Role
    from shared.model import ModelConfig
    from shared.schemas import Aggregation, AggregationName, RunCreate, UpdateManifest
    from shared.tensors import load_file, sha256_file, update_bytes

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="fedseg-bench-"))
    fed = Federation(make_engine(f"sqlite:///{root / 'state.db'}"), BlobStore(root / "blobs"))
    fed.migrate()
    names = [f"node-{i:03d}" for i in range(nodes)]
    fed.create_run(
        Identity("admin", Role.ADMIN, 1),
        RunCreate(
            rounds=1,
            expected_nodes=names,
            min_nodes=nodes,
            model=ModelConfig(),
            aggregation=Aggregation(name=AggregationName("fedavg" if mode == "naive" else mode)),
        ),
    )
    base_path: Path | None = None
    for i, name in enumerate(names):
        task = fed.poll(Identity(name, Role.NODE, 10 + i)).task
        assert task is not None
        base_path = fed.blobs.open_path(task.base_model)
        gen = torch.Generator().manual_seed(i)
        delta = {
            k: torch.randn(v.shape, generator=gen) * 1e-3 for k, v in load_file(base_path).items()
        }
        manifest = UpdateManifest(
            run_id=task.run_id, round=1, task_nonce=task.task_nonce,
            base_model=task.base_model, num_samples=1 + i % 7,
        )  # fmt: skip
        staged = fed.blobs.new_temporary()
        staged.write_bytes(update_bytes(delta, manifest))
        del delta
        received = Received(staged, sha256_file(staged), staged.stat().st_size)
        fed.accept_update(Identity(name, Role.NODE, 10 + i), task.run_id, 1, received)
    import gc

    gc.collect()
    before = _rss_mib()
    if mode != "naive":
        fed.advance()  # open -> aggregating
        fed.advance()  # aggregate, publish, open the evaluation round
        assert fed.list_rounds()[0].state == "closed"
    else:
        # Naive baseline: hold every update in memory, then average.
        from shared.tensors import load_file as load

        with fed._sessions() as session:
            from sqlalchemy import select

            from services.aggregator.state.models import Update

            rows = session.scalars(select(Update)).all()
            updates = [(r.num_samples, load(fed.blobs.open_path(r.sha256))) for r in rows]
        total = sum(w for w, _ in updates)
        assert base_path is not None
        base = load_file(base_path)
        _ = {k: base[k] + sum(w * u[k] for w, u in updates) / total for k in base}
    return {"nodes": nodes, "setup_peak_mib": before, "peak_mib": _rss_mib()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[4, 16, 32])
    parser.add_argument(
        "--strategies", nargs="+", default=["fedavg", "fedadam", "trimmed-mean", "median"]
    )
    parser.add_argument("--child", nargs=2, metavar=("NODES", "MODE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(int(args.child[0]), args.child[1])))
        return 0
    modes = [*args.strategies, "naive"]
    results: dict[str, dict[int, float]] = {mode: {} for mode in modes}
    print("peak RSS (MiB) while aggregating N updates of the 4.7 M-parameter model")
    print(f"{'nodes':>5}  " + "  ".join(f"{mode:>12}" for mode in modes))
    for n in args.nodes:
        for mode in modes:
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.aggregator_memory", "--child", str(n), mode],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            results[mode][n] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
        print(f"{n:>5}  " + "  ".join(f"{results[mode][n]:>12.0f}" for mode in modes))
    lo, hi = min(args.nodes), max(args.nodes)
    print(f"\npeak at {hi} nodes / peak at {lo} nodes (streaming target <= 1.5x):")
    for mode in modes:
        ratio = results[mode][hi] / results[mode][lo]
        growth = results[mode][hi] - results[mode][lo]
        print(f"  {mode:>12}: {ratio:.2f}x (+{growth:.0f} MiB for {hi - lo} more updates)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
