"""An update racing its round's close: in the model if answered 201, else 409 and nothing kept.

The race is forced through ``Federation.update_seam``: the close runs in another thread at
a chosen point of the accepting transaction, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import torch

from services.aggregator.federation import Federation
from services.aggregator.state.updates import Received
from shared.errors import RoundNotOpenError
from shared.identity import Identity, Role
from shared.schemas import RoundState
from shared.tensors import load_file, sha256_file
from tests.services.aggregator.support import FakeClock, tiny_run, update_for

ADMIN = Identity("admin", Role.ADMIN, 1)
NAMES = ["site-1", "site-2", "site-3"]


def _node(name: str) -> Identity:
    return Identity(name, Role.NODE, 100 + int(name.split("-")[1]))


def _staged(federation: Federation, tmp_path: Path, name: str, value: float) -> Received:
    poll = federation.poll(_node(name))
    assert poll.task is not None
    base = load_file(federation.blobs.open_path(poll.task.base_model))
    delta = {k: torch.full_like(v, value) for k, v in base.items()}
    staged = federation.blobs.new_temporary()
    staged.write_bytes(update_for(poll.task, delta, num_samples=1))
    return Received(staged, sha256_file(staged), staged.stat().st_size)


def _accept(federation: Federation, name: str, received: Received) -> None:
    _, new = federation.accept_update(_node(name), 1, 1, received)
    assert new


def _close_in_thread(federation: Federation) -> threading.Thread:
    def close() -> None:
        while federation.advance():
            pass

    thread = threading.Thread(target=close, daemon=True)
    thread.start()
    return thread


def _setup(federation: Federation, tmp_path: Path, clock: FakeClock) -> Received:
    federation.create_run(ADMIN, tiny_run(rounds=1, expected_nodes=NAMES, min_nodes=2))
    late = _staged(federation, tmp_path, "site-3", 100.0)
    for name in NAMES[:2]:
        _accept(federation, name, _staged(federation, tmp_path, name, 1.0))
    clock.advance(61.0)  # past the deadline: the ticker may close now
    return late


def _mean_delta(federation: Federation) -> float:
    first = federation.list_rounds()[0]
    base = load_file(federation.blobs.open_path(first.base_model))
    merged = load_file(federation.blobs.open_path(first.result_model or ""))
    name = next(iter(base))
    return float((merged[name] - base[name]).mean())


def test_a_close_that_commits_during_the_checks_makes_the_upload_a_409(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    late = _setup(federation, tmp_path, clock)

    def close_now(phase: str) -> None:
        if phase == "checked":
            _close_in_thread(federation).join(timeout=60)

    federation.update_seam = close_now
    with pytest.raises(RoundNotOpenError, match=r"closed .* while this upload was being checked"):
        federation.accept_update(_node("site-3"), 1, 1, late)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.CLOSED
    assert first.reported_nodes == ["site-1", "site-2"]
    assert _mean_delta(federation) == pytest.approx(1.0)
    assert not federation.blobs.exists(late.sha256)  # nothing of it was kept


def test_a_close_that_starts_while_the_round_is_held_waits_and_counts_the_upload(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    late = _setup(federation, tmp_path, clock)
    closers: list[threading.Thread] = []

    def close_meanwhile(phase: str) -> None:
        if phase == "held":
            closers.append(_close_in_thread(federation))
            closers[0].join(timeout=1.0)
            # The close cannot pass the accepting transaction's lock on the round.
            assert closers[0].is_alive()

    federation.update_seam = close_meanwhile
    _accept(federation, "site-3", late)
    closers[0].join(timeout=60)
    assert not closers[0].is_alive()
    first = federation.list_rounds()[0]
    assert first.state == RoundState.CLOSED
    assert first.reported_nodes == NAMES
    assert _mean_delta(federation) == pytest.approx((1.0 + 1.0 + 100.0) / 3)


def test_a_close_that_commits_just_before_a_removal_keeps_the_round_aggregating(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    """The removal's round lock is conditional on ``open``: it cannot undo the close."""
    from sqlalchemy import event

    _setup(federation, tmp_path, clock)  # site-1, site-2 accepted, past the deadline
    fired: list[threading.Thread] = []

    def before(*args: object) -> None:
        statement = str(args[2])
        if statement.startswith("UPDATE rounds SET state") and not fired:
            fired.append(_close_in_thread(federation))  # the ticker wins the race
            fired[0].join(10)

    event.listen(federation.engine, "before_cursor_execute", before)
    try:
        federation.remove_node(1, "site-3")
    finally:
        event.remove(federation.engine, "before_cursor_execute", before)
    assert not fired[0].is_alive()
    (first,) = [r for r in federation.list_rounds() if r.round == 1]
    assert (first.state, first.reported_nodes) == (RoundState.CLOSED, ["site-1", "site-2"])
    assert federation.get_run(1).expected_nodes == ["site-1", "site-2"]
