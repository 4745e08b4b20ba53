"""The state contract, run on SQLite and on PostgreSQL: rounds, quorum, deadlines, FedAvg."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
import torch
from sqlalchemy import select

from services.aggregator.federation import Federation
from services.aggregator.state.updates import Received
from shared.errors import ConflictError, InvalidRequestError, UpdateRejectedError
from shared.identity import Identity, Role
from shared.schemas import Aggregation, AggregationName, RoundKind, RoundState, RunState, Task
from shared.tensors import load_file, sha256_file
from tests.services.aggregator.support import FakeClock, tiny_run, update_for, zero_delta

ADMIN = Identity("admin", Role.ADMIN, 1)


def node(name: str) -> Identity:
    return Identity(name, Role.NODE, 100 + int(name.split("-")[1]))


def task_of(federation: Federation, name: str) -> Task:
    poll = federation.poll(node(name))
    assert poll.task is not None, f"{name} got no task"
    return poll.task


def submit(
    federation: Federation, tmp_path: Path, name: str, delta: dict[str, torch.Tensor], samples: int
) -> None:
    task = task_of(federation, name)
    path = tmp_path / f"{name}-{task.round}.upload"
    path.write_bytes(update_for(task, delta, num_samples=samples))
    staged = federation.blobs.new_temporary()
    staged.write_bytes(path.read_bytes())
    received = Received(staged, sha256_file(staged), staged.stat().st_size)
    _, new = federation.accept_update(node(name), task.run_id, task.round, received)
    assert new


def settle(federation: Federation) -> None:
    while federation.advance():
        pass


def test_round_closes_with_sample_weighted_fedavg(federation: Federation, tmp_path: Path) -> None:
    federation.create_run(ADMIN, tiny_run())
    base_sha = task_of(federation, "site-1").base_model
    base = load_file(federation.blobs.open_path(base_sha))
    ones = {k: torch.ones_like(v) for k, v in base.items()}
    submit(federation, tmp_path, "site-1", ones, samples=1)
    submit(federation, tmp_path, "site-2", {k: 4 * v for k, v in ones.items()}, samples=3)
    settle(federation)
    first, second = federation.list_rounds()
    assert (first.state, first.reported_nodes, first.num_samples) == (
        RoundState.CLOSED,
        ["site-1", "site-2"],
        4,
    )
    assert second.state == RoundState.OPEN
    assert second.base_model == first.result_model
    merged = load_file(federation.blobs.open_path(first.result_model or ""))
    for name, tensor in base.items():
        # (1 * 1 + 3 * 4) / 4 = 3.25
        torch.testing.assert_close(merged[name], tensor + 3.25, rtol=0, atol=1e-6)


def test_fedavg_is_deterministic_for_same_updates(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    federation.create_run(ADMIN, tiny_run(rounds=1))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    gen = torch.Generator().manual_seed(3)
    deltas = {
        n: {k: torch.randn(v.shape, generator=gen) for k, v in base.items()}
        for n in ("site-1", "site-2")
    }
    submit(federation, tmp_path, "site-2", deltas["site-2"], samples=4)
    submit(federation, tmp_path, "site-1", deltas["site-1"], samples=2)
    settle(federation)
    produced = federation.list_rounds()[0].result_model
    expected = {
        k: base[k]
        + (2 * deltas["site-1"][k].double() + 4 * deltas["site-2"][k].double()).div(6).float()
        for k in base
    }
    merged = load_file(federation.blobs.open_path(produced or ""))
    for k in base:
        torch.testing.assert_close(merged[k], expected[k], rtol=0, atol=1e-6)


def test_full_run_ends_with_evaluation_round(federation: Federation, tmp_path: Path) -> None:
    from shared.schemas import EvaluationReport, RegionDice, RegionDistance, UpdateMetrics

    run = federation.create_run(ADMIN, tiny_run(rounds=1))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    for name in ("site-1", "site-2"):
        submit(
            federation,
            tmp_path,
            name,
            zero_delta(federation.blobs.open_path(task_of(federation, name).base_model)),
            2,
        )
    settle(federation)
    evaluation = task_of(federation, "site-1")
    assert evaluation.kind == RoundKind.EVALUATE
    assert evaluation.round == 2
    dice = RegionDice(tc=0.5, wt=0.7, et=0.3, mean=0.5)
    hd95 = {
        "site-1": RegionDistance(tc=2.0, wt=4.0, et=6.0, mean=4.0),
        "site-2": RegionDistance(tc=4.0, wt=6.0, et=9.0, mean=6.5),
    }
    for name in ("site-1", "site-2"):
        t = task_of(federation, name)
        federation.accept_evaluation(
            node(name),
            t.run_id,
            t.round,
            EvaluationReport(
                run_id=t.run_id, round=t.round, task_nonce=t.task_nonce, base_model=t.base_model,
                num_samples=2, metrics=UpdateMetrics(dice_global=dice, hd95_global=hd95[name]),
            ),
        )  # fmt: skip
    settle(federation)
    assert federation.get_run(run.id).state == RunState.COMPLETED
    last = federation.get_round(run.id, 2)
    assert last.mean_dice_global == dice
    # Each node counts once, whatever its number of validation cases.
    assert last.mean_hd95_global == RegionDistance(tc=3.0, wt=5.0, et=7.5, mean=5.25)
    assert last.mean_hd95_local is None
    assert federation.poll(node("site-1")).run_state == RunState.COMPLETED
    assert base  # the initial model stayed loadable throughout
    # Evaluation reports carry no privacy total; the node listing must still read.
    listed = {v.name: v for v in federation.list_nodes()}
    assert listed["site-1"].rounds_joined == 2
    assert listed["site-1"].privacy_total is None


def test_poll_hands_out_the_same_task_again(federation: Federation) -> None:
    federation.create_run(ADMIN, tiny_run())
    assert task_of(federation, "site-1") == task_of(federation, "site-1")
    assert task_of(federation, "site-1").task_nonce != task_of(federation, "site-2").task_nonce


def test_node_not_in_run_gets_no_task(federation: Federation) -> None:
    federation.create_run(ADMIN, tiny_run())
    poll = federation.poll(node("site-3"))
    assert (poll.task, poll.run_id, poll.run_state) == (None, 1, RunState.RUNNING)


def test_deadline_with_quorum_aggregates_what_arrived(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    federation.create_run(ADMIN, tiny_run(min_nodes=1))
    submit(
        federation,
        tmp_path,
        "site-1",
        zero_delta(federation.blobs.open_path(task_of(federation, "site-1").base_model)),
        2,
    )
    settle(federation)
    assert federation.list_rounds()[0].state == RoundState.OPEN
    clock.advance(61)
    settle(federation)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.CLOSED
    assert first.detail == "deadline passed with 1 of 2 updates"


def test_deadline_without_quorum_reopens_then_fails(
    federation: Federation, clock: FakeClock
) -> None:
    run = federation.create_run(ADMIN, tiny_run(min_nodes=2, max_round_attempts=2))
    clock.advance(61)
    settle(federation)
    first = federation.list_rounds()[0]
    assert (first.state, first.attempt) == (RoundState.OPEN, 2)
    assert first.detail == (
        "deadline passed with 0 of 2 updates (min_nodes 2); re-opened, attempt 2 of 2"
    )
    clock.advance(61)
    settle(federation)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.FAILED
    assert federation.get_run(run.id).state == RunState.FAILED
    assert federation.get_run(run.id).detail == (
        "round 1 failed: deadline passed with 0 of 2 updates (min_nodes 2)"
    )


def test_fail_policy_fails_at_first_deadline(federation: Federation, clock: FakeClock) -> None:
    run = federation.create_run(ADMIN, tiny_run(min_nodes=2, deadline_policy="fail"))
    clock.advance(61)
    settle(federation)
    assert federation.get_run(run.id).state == RunState.FAILED


def test_second_active_run_is_refused(federation: Federation) -> None:
    federation.create_run(ADMIN, tiny_run())
    with pytest.raises(ConflictError, match="run 1 is still running; abort it first"):
        federation.create_run(ADMIN, tiny_run())


def test_min_nodes_above_expected_is_refused(federation: Federation) -> None:
    with pytest.raises(
        InvalidRequestError, match=r"min_nodes \(3\) exceeds the number of expected nodes \(2\)"
    ):
        federation.create_run(ADMIN, tiny_run(min_nodes=3))


def test_pause_stops_tasks_and_resume_extends_deadline(
    federation: Federation, clock: FakeClock
) -> None:
    run = federation.create_run(ADMIN, tiny_run(min_nodes=2))
    federation.set_run_state(run.id, RunState.PAUSED)
    assert federation.poll(node("site-1")).task is None
    clock.advance(3600)
    settle(federation)
    federation.set_run_state(run.id, RunState.RUNNING)
    settle(federation)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.OPEN
    assert first.deadline == clock.now + timedelta(seconds=60)


def test_abort_closes_open_round(federation: Federation) -> None:
    run = federation.create_run(ADMIN, tiny_run())
    federation.set_run_state(run.id, RunState.ABORTED)
    assert federation.list_rounds()[0].state == RoundState.ABORTED
    with pytest.raises(ConflictError, match="run 1 is aborted; it cannot become running"):
        federation.set_run_state(run.id, RunState.RUNNING)


def test_crash_while_aggregating_is_finished_on_recovery(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    from services.aggregator.state.models import Round
    from services.aggregator.state.rounds import check_round
    from services.aggregator.state.runs import get_run

    federation.create_run(ADMIN, tiny_run(rounds=1))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    submit(federation, tmp_path, "site-1", {k: torch.ones_like(v) for k, v in base.items()}, 1)
    submit(federation, tmp_path, "site-2", {k: torch.ones_like(v) for k, v in base.items()}, 1)
    # The process dies right after committing "aggregating", before the model is written.
    with federation._sessions() as session:
        rnd = session.get(Round, 1)
        assert rnd is not None
        assert check_round(session, get_run(session, 1), rnd, clock())
        session.commit()
    assert federation.list_rounds()[0].state == RoundState.AGGREGATING
    (federation.blobs.tmp / "incoming-halfwritten").write_bytes(b"partial upload")
    restarted = Federation(federation.engine, federation.blobs, clock=clock)
    restarted.recover()
    first = restarted.list_rounds()[0]
    assert first.state == RoundState.CLOSED
    assert first.num_samples == 2
    merged = load_file(restarted.blobs.open_path(first.result_model or ""))
    for name, tensor in base.items():
        torch.testing.assert_close(merged[name], tensor + 1, rtol=0, atol=1e-6)
    assert list(restarted.blobs.tmp.iterdir()) == []


def _decline(federation: Federation, name: str, reason: str = "budget spent") -> None:
    from shared.schemas import Decline

    t = task_of(federation, name)
    _, new = federation.accept_decline(
        node(name),
        t.run_id,
        t.round,
        Decline(
            run_id=t.run_id, round=t.round, task_nonce=t.task_nonce, base_model=t.base_model,
            reason=reason,
        ),
    )  # fmt: skip
    assert new


def test_declined_node_does_not_hold_up_the_round(federation: Federation, tmp_path: Path) -> None:
    federation.create_run(ADMIN, tiny_run(min_nodes=1))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    submit(federation, tmp_path, "site-1", {k: torch.ones_like(v) for k, v in base.items()}, 2)
    _decline(federation, "site-2", "privacy budget exhausted")
    settle(federation)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.CLOSED
    assert (first.reported_nodes, first.declined_nodes, first.num_samples) == (
        ["site-1"],
        ["site-2"],
        2,
    )
    declined = next(u for u in first.updates if u.node == "site-2")
    assert (declined.status, declined.detail) == ("declined", "privacy budget exhausted")
    merged = load_file(federation.blobs.open_path(first.result_model or ""))
    for name, tensor in base.items():  # only site-1's update counts
        torch.testing.assert_close(merged[name], tensor + 1, rtol=0, atol=1e-6)
    # the declining node gets the next round's task like everyone else
    assert task_of(federation, "site-2").round == 2


def test_too_few_contributors_after_all_respond_fails_at_once(federation: Federation) -> None:
    run = federation.create_run(ADMIN, tiny_run(min_nodes=1))
    _decline(federation, "site-1")
    _decline(federation, "site-2")
    settle(federation)
    assert federation.list_rounds()[0].state == RoundState.FAILED
    assert federation.get_run(run.id).detail == (
        "round 1 failed: all nodes responded but only 0 contributed (min_nodes 1)"
    )


def test_a_round_whose_model_would_not_be_finite_fails_and_publishes_nothing(
    federation: Federation, tmp_path: Path
) -> None:
    # The median takes any finite values (FedAvg refuses these at the door, below).
    median = Aggregation(name=AggregationName.MEDIAN)
    federation.create_run(ADMIN, tiny_run(rounds=3, aggregation=median))
    for _ in (1, 2):
        base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
        huge = {k: torch.full_like(v, 3e38) for k, v in base.items()}
        submit(federation, tmp_path, "site-1", huge, samples=4)
        submit(federation, tmp_path, "site-2", huge, samples=4)
        settle(federation)
    first, second = federation.list_rounds()
    assert first.state == RoundState.CLOSED  # 3e38 is still a float32
    assert second.state == RoundState.FAILED
    assert second.result_model is None
    assert "the aggregated model is not finite" in (second.detail or "")
    run = federation.get_run(1)
    assert run.state == RunState.FAILED
    assert run.global_model == first.result_model  # the last finite model stays the global one


@pytest.mark.parametrize("strategy", [AggregationName.FEDAVG, AggregationName.FEDADAM])
def test_an_update_beyond_the_exact_sums_range_is_refused_and_changes_nothing(
    federation: Federation, tmp_path: Path, strategy: AggregationName
) -> None:
    federation.create_run(ADMIN, tiny_run(rounds=1, aggregation=Aggregation(name=strategy)))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    # 4 * 2^32 = 2^34: just at the limit; 4 * 0.99 * 2^32 is inside it.
    with pytest.raises(UpdateRejectedError, match=r"beyond what the aggregator sums exactly"):
        submit(federation, tmp_path, "site-1",
               {k: torch.full_like(v, 2.0**32) for k, v in base.items()}, samples=4)  # fmt: skip
    assert federation.list_rounds()[0].reported_nodes == []
    submit(federation, tmp_path, "site-1",
           {k: torch.full_like(v, 0.99 * 2.0**32) for k, v in base.items()}, samples=4)  # fmt: skip
    assert federation.list_rounds()[0].reported_nodes == ["site-1"]


def test_an_out_of_range_update_stored_by_an_older_version_fails_the_round_clearly(
    federation: Federation, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from services.aggregator.aggregation import exact_sum

    federation.create_run(ADMIN, tiny_run(rounds=1))
    base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
    monkeypatch.setattr(exact_sum, "refusal", lambda _largest, _weight: None)  # no check
    huge = {k: torch.full_like(v, 2.0**40) for k, v in base.items()}
    for name in ("site-1", "site-2"):
        submit(federation, tmp_path, name, huge, samples=1)
    federation.wait_for_folds()
    settle(federation)
    first = federation.list_rounds()[0]
    assert first.state == RoundState.FAILED
    assert first.result_model is None
    assert "beyond the exact sum's range" in (first.detail or "")


def test_a_run_aggregates_with_the_strategy_it_was_created_with(
    federation: Federation, tmp_path: Path
) -> None:
    nodes = ["site-1", "site-2", "site-3"]
    median = Aggregation(name=AggregationName.MEDIAN)
    view = federation.create_run(
        ADMIN, tiny_run(rounds=1, expected_nodes=nodes, aggregation=median)
    )
    assert view.aggregation == median
    base_sha = task_of(federation, "site-1").base_model
    base = load_file(federation.blobs.open_path(base_sha))
    for name, value in zip(nodes, (1.0, 2.0, 1000.0), strict=True):  # site-3 is way off
        submit(
            federation,
            tmp_path,
            name,
            {k: torch.full_like(v, value) for k, v in base.items()},
            samples=4,
        )
    settle(federation)
    merged = load_file(federation.blobs.open_path(federation.list_rounds()[0].result_model or ""))
    for name, tensor in base.items():
        torch.testing.assert_close(merged[name], tensor + 2.0, rtol=0, atol=1e-6)  # the median


def test_many_first_polls_of_a_new_node_at_once_all_succeed(federation: Federation) -> None:
    import threading

    federation.create_run(ADMIN, tiny_run())
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def first_poll() -> None:
        barrier.wait()
        try:
            federation.poll(node("site-1"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first_poll) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert [n.name for n in federation.list_nodes()] == ["site-1"]


def test_fedadam_carries_its_moments_across_rounds_and_a_restart(
    federation: Federation, tmp_path: Path, clock: FakeClock
) -> None:
    from services.aggregator.aggregation.registry import strategy_for
    from services.aggregator.aggregation.strategy import WeightedUpdate
    from services.aggregator.state.models import Round
    from services.aggregator.state.rounds import check_round
    from services.aggregator.state.runs import get_run

    adam = Aggregation(name=AggregationName.FEDADAM, server_lr=0.02)
    federation.create_run(ADMIN, tiny_run(rounds=2, aggregation=adam))
    gen = torch.Generator().manual_seed(5)
    expected: dict[str, torch.Tensor] | None = None
    state = None
    for number in (1, 2):
        base = load_file(federation.blobs.open_path(task_of(federation, "site-1").base_model))
        deltas = {
            n: {k: 1e-3 * torch.randn(v.shape, generator=gen) for k, v in base.items()}
            for n in ("site-1", "site-2")
        }
        submit(federation, tmp_path, "site-1", deltas["site-1"], samples=2)
        submit(federation, tmp_path, "site-2", deltas["site-2"], samples=3)
        updates = [
            WeightedUpdate(n, w, lambda d=deltas[n]: iter(d.items()))
            for n, w in (("site-1", 2.0), ("site-2", 3.0))
        ]
        expected, state = strategy_for(adam).aggregate_with_state(base, updates, state)
        if number == 2:  # die after committing "aggregating"; a restart aggregates again
            with federation._sessions() as session:
                rnd = session.scalar(select(Round).where(Round.number == 2))
                assert rnd is not None
                assert check_round(session, get_run(session, 1), rnd, clock())
                session.commit()
            federation = Federation(federation.engine, federation.blobs, clock=clock)
            federation.recover()  # also collects unreferenced blobs: the moments must stay
        settle(federation)
    rounds = federation.list_rounds()
    assert [r.state for r in rounds[:2]] == [RoundState.CLOSED] * 2
    merged = load_file(federation.blobs.open_path(rounds[1].result_model or ""))
    assert expected is not None
    assert all(torch.equal(merged[k], expected[k]) for k in expected)
    with federation._sessions() as session:
        shas = list(session.scalars(select(Round.server_state).order_by(Round.number)))
    assert shas[0] is not None
    assert shas[1] is not None
    assert shas[2] is None
    stored = load_file(federation.blobs.open_path(shas[1]))
    assert state is not None
    assert all(torch.equal(stored[k], state[k]) for k in state)
