"""Updates folded into the round's exact sum as they arrive: the same model in any order,
after a failed fold, and after a restart that lost every sum (kill -9 during folding)."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest
import torch

from services.aggregator.core.blobs import BlobStore
from services.aggregator.core.db import make_engine
from services.aggregator.federation import Federation
from services.aggregator.state.updates import Received
from shared.identity import Identity, Role
from shared.schemas import Aggregation, AggregationName, RoundState
from shared.tensors import load_file, sha256_file
from tests.services.aggregator.support import tiny_run, update_for

ADMIN = Identity("admin", Role.ADMIN, 1)
NODES = [f"site-{i}" for i in range(1, 7)]


def _node(name: str) -> Identity:
    return Identity(name, Role.NODE, 100 + NODES.index(name))


def _deltas(base: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Per node, deltas whose float sums depend on the order they are added in."""
    out = {}
    for i, name in enumerate(NODES):
        gen = torch.Generator().manual_seed(i)
        scale = 10.0 ** (3 * (i % 3) - 4)  # 1e-4, 0.1, 100: float addition is not associative
        out[name] = {
            k: (torch.randn(v.shape, generator=gen) * scale).to(v.dtype)
            if v.is_floating_point() else torch.zeros_like(v)
            for k, v in base.items()
        }  # fmt: skip
    return out


def _upload(fed: Federation, tmp: Path, name: str, delta: dict[str, torch.Tensor]) -> None:
    poll = fed.poll(_node(name))
    assert poll.task is not None
    staged = fed.blobs.new_temporary()
    staged.write_bytes(update_for(poll.task, delta, num_samples=1 + NODES.index(name) % 4))
    received = Received(staged, sha256_file(staged), staged.stat().st_size)
    assert fed.accept_update(_node(name), poll.task.run_id, poll.task.round, received)[1]


def _fresh(root: Path) -> Federation:
    fed = Federation(make_engine(f"sqlite:///{root / 'state.db'}"), BlobStore(root / "blobs"))
    fed.migrate()
    return fed


def _close(fed: Federation) -> bytes:
    while fed.advance():
        pass
    first = fed.list_rounds()[0]
    assert first.state == RoundState.CLOSED, first.detail
    assert first.result_model is not None
    return fed.blobs.open_path(first.result_model).read_bytes()


def _run(strategy: AggregationName) -> object:
    return tiny_run(rounds=1, expected_nodes=NODES, min_nodes=len(NODES),
                    aggregation=Aggregation(name=strategy))  # fmt: skip


def _started(fed: Federation, strategy: AggregationName) -> dict[str, dict[str, torch.Tensor]]:
    """Create the run; every node's delta for its first round."""
    fed.create_run(ADMIN, _run(strategy))  # type: ignore[arg-type]
    poll = fed.poll(_node(NODES[0]))
    assert poll.task is not None
    return _deltas(load_file(fed.blobs.open_path(poll.task.base_model)))


@pytest.mark.parametrize("strategy", [AggregationName.FEDAVG, AggregationName.FEDADAM])
def test_the_model_is_the_same_bits_whatever_order_the_updates_arrive_in(
    tmp_path: Path, strategy: AggregationName
) -> None:
    orders = [list(NODES), list(reversed(NODES))]
    shuffler = random.Random(3)
    for _ in range(3):
        orders.append(shuffler.sample(NODES, len(NODES)))
    models = []
    for n, order in enumerate(orders):
        fed = _fresh(tmp_path / f"order-{n}")
        deltas = _started(fed, strategy)
        for name in order:
            _upload(fed, tmp_path, name, deltas[name])
        fed.wait_for_folds()
        assert len(fed.sums) == 1  # every update was folded in as it arrived
        models.append(_close(fed))
        assert len(fed.sums) == 0
    assert len(set(models)) == 1, "the model depends on the arrival order"


def test_a_float_running_sum_would_depend_on_the_order() -> None:
    """The reason for the integer sum: the same six deltas in float64, two orders."""
    base = {"w": torch.zeros(4096)}
    deltas = _deltas(base)
    sums = []
    for order in (NODES, list(reversed(NODES))):
        acc = torch.zeros(4096, dtype=torch.float64)
        for name in order:
            acc.add_(deltas[name]["w"].to(torch.float64), alpha=1 + NODES.index(name) % 4)
        sums.append(acc.numpy().tobytes())
    assert sums[0] != sums[1]


def test_a_fold_that_fails_halfway_is_dropped_and_the_close_rebuilds_it(
    federation: Federation, tmp_path: Path
) -> None:
    deltas = _started(federation, AggregationName.FEDAVG)
    for name in NODES[:3]:
        _upload(federation, tmp_path, name, deltas[name])
    federation.wait_for_folds()
    calls = itertools.count()

    def fail_halfway(_tensor: str) -> None:
        if next(calls) == 2:
            raise OSError("disk read failed")

    federation.sums.seam = fail_halfway
    _upload(federation, tmp_path, NODES[3], deltas[NODES[3]])
    federation.wait_for_folds()
    assert len(federation.sums) == 0  # the half-folded sum was not kept
    federation.sums.seam = lambda _tensor: None
    for name in NODES[4:]:
        _upload(federation, tmp_path, name, deltas[name])
    folded_then_rebuilt = _close(federation)

    clean = _fresh(tmp_path / "clean")
    clean.create_run(ADMIN, _run(AggregationName.FEDAVG))  # type: ignore[arg-type]
    for name in NODES:
        _upload(clean, tmp_path, name, deltas[name])
    assert _close(clean) == folded_then_rebuilt


def test_a_restart_that_lost_every_sum_publishes_the_same_model(
    federation: Federation, database_url: str, tmp_path: Path
) -> None:
    """What kill -9 during folding leaves: accepted rows and files, no sum in memory."""
    deltas = _started(federation, AggregationName.FEDADAM)
    for name in NODES[:4]:
        _upload(federation, tmp_path, name, deltas[name])
    federation.wait_for_folds()
    assert len(federation.sums) == 1
    # The process dies: a new one on the same database and blobs starts with no sums.
    engine = make_engine(database_url)
    try:
        restarted = Federation(engine, federation.blobs)
        restarted.recover()
        for name in NODES[4:]:
            _upload(restarted, tmp_path, name, deltas[name])
        after_restart = _close(restarted)
        restarted.close()
    finally:
        engine.dispose()

    clean = _fresh(tmp_path / "clean")
    clean.create_run(ADMIN, _run(AggregationName.FEDADAM))  # type: ignore[arg-type]
    for name in reversed(NODES):
        _upload(clean, tmp_path, name, deltas[name])
    assert _close(clean) == after_restart
