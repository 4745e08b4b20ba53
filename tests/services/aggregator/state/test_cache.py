"""Status answers are kept between writes, and never outlive one."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select

from services.aggregator.federation import Federation
from services.aggregator.state.cache import Generation, StatusCache
from services.aggregator.state.models import Node
from shared.identity import Identity, Role
from shared.schemas import RoundState
from tests.services.aggregator.state.test_federation_state import settle, submit
from tests.services.aggregator.support import FakeClock, tiny_run, zero_delta

ADMIN = Identity("admin", Role.ADMIN, 1)


def test_the_generation_moves_once_a_write_commits_and_not_for_reads(
    federation: Federation,
) -> None:
    generation = Generation(federation._sessions)
    with federation._sessions() as session:
        session.scalars(select(Node)).all()
        session.commit()
    assert generation.value == 0
    with federation._sessions.begin() as session:
        session.add(Node(name="site-9", role="node", first_seen=FakeClock()(),
                         last_seen=FakeClock()(), serial="1"))  # fmt: skip
        session.flush()
        assert generation.value == 0  # flushed, not committed: a reader cannot see it yet
    assert generation.value == 1
    with federation._sessions() as session:
        session.add(Node(name="site-8", role="node", first_seen=FakeClock()(),
                         last_seen=FakeClock()(), serial="2"))  # fmt: skip
        session.flush()
        session.rollback()
    assert generation.value == 1


def test_an_answer_is_computed_once_per_write_and_per_stamp(federation: Federation) -> None:
    generation = Generation(federation._sessions)
    cache = StatusCache(generation)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert cache.get("k", compute) == cache.get("k", compute) == 1
    generation.bump()
    assert cache.get("k", compute) == 2
    assert cache.get("k", compute, stamp=5) == 3
    assert cache.get("k", compute, stamp=5) == 3
    assert len(calls) == 3


def test_status_follows_every_change_while_unchanged_status_is_reused(
    federation: Federation, tmp_path: Path
) -> None:
    federation.create_run(ADMIN, tiny_run(rounds=1))
    first = federation.list_rounds()
    assert federation.list_rounds() is first  # nothing written in between
    poll = federation.poll(Identity("site-1", Role.NODE, 10))
    assert poll.task is not None
    base = federation.blobs.open_path(poll.task.base_model)
    submit(federation, tmp_path, "site-1", zero_delta(base), samples=1)
    after = federation.list_rounds()
    assert after[0].reported_nodes == ["site-1"]
    submit(federation, tmp_path, "site-2", zero_delta(base), samples=1)
    settle(federation)
    closed = federation.list_rounds()
    assert closed[0].state == RoundState.CLOSED
    assert federation.get_run(1).state == "running"  # the evaluation round is open
    # A settled round's view is reused, with the run's expected nodes as they are now.
    federation.remove_node(1, "site-2")
    again = federation.list_rounds()
    assert again[0].expected_nodes == ["site-1"]
    assert again[0].reported_nodes == closed[0].reported_nodes == ["site-1", "site-2"]
