"""Robust strategies: four honest nodes and one hostile one (scaled x100 or sign-flipped).

Each honest delta is a shared direction plus node noise; the hostile node sends 100 times
an honest delta, or -100 times (sign-flipped), with the same weight as the others (a
larger claim is refused before aggregation, services.aggregator.state.weights). FedAvg
is moved far from the honest-only mean; the robust strategies stay within a stated
distance of it, in units of the honest step (the honest mean's distance from the base).
"""

from __future__ import annotations

import pytest
import torch

from services.aggregator.aggregation.fedavg import FedAvg
from services.aggregator.aggregation.registry import strategy_for
from services.aggregator.aggregation.robust import Median, NormBounded, TrimmedMean
from services.aggregator.aggregation.strategy import Strategy, WeightedUpdate, weighted_mean_delta
from shared.privacy.types import SparseTensor
from shared.schemas import Aggregation, AggregationName

SHAPES = {"conv.weight": (8, 4, 3, 3, 3), "conv.bias": (8,), "steps": ()}


def _update(
    node: str, weight: float, parts: dict[str, torch.Tensor | SparseTensor]
) -> WeightedUpdate:
    return WeightedUpdate(node=node, weight=weight, tensors=lambda: iter(parts.items()))


def _federation(
    attack: str,
) -> tuple[dict[str, torch.Tensor], list[WeightedUpdate], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    base = {n: torch.randn(s, generator=gen) for n, s in SHAPES.items() if s}
    base["steps"] = torch.tensor(7, dtype=torch.int64)
    direction = {
        n: 0.01 * torch.randn(t.shape, generator=gen) for n, t in base.items() if n != "steps"
    }
    honest = [
        {n: d + 0.002 * torch.randn(d.shape, generator=gen) for n, d in direction.items()}
        for _ in range(4)
    ]
    hostile = {n: (100.0 if attack == "scaled" else -100.0) * d for n, d in honest[0].items()}
    updates = [_update(f"site-{i}", 10.0, dict(h)) for i, h in enumerate(honest, start=1)]
    updates.append(_update("site-5", 10.0, hostile))
    reference = FedAvg().aggregate(base, updates[:4])  # the honest nodes alone
    return base, updates, reference


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    return (
        sum(
            float(torch.linalg.vector_norm((a[n] - b[n]).double())) ** 2
            for n in a
            if a[n].is_floating_point()
        )
        ** 0.5
    )


def _honest_step(base: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> float:
    return _distance(base, reference)


@pytest.mark.parametrize("attack", ["scaled", "flipped"])
def test_fedavg_is_moved_far_and_the_robust_strategies_are_not(attack: str) -> None:
    base, updates, reference = _federation(attack)
    step = _honest_step(base, reference)
    moved = _distance(FedAvg().aggregate(base, updates), reference)
    # FedAvg: a fifth of the hostile delta, about 20 honest steps away.
    assert moved > 15.0 * step
    robust: list[tuple[Strategy, float]] = [
        (TrimmedMean(0.2), 0.15), (Median(), 0.15), (NormBounded(max_norm=1.2 * step), 0.5),
    ]  # fmt: skip
    for strategy, bound in robust:
        off = _distance(strategy.aggregate(base, updates), reference)
        assert off < bound * step, (strategy.name, attack, off / step)
    # Non-float tensors keep the base model's value under every strategy.
    assert int(TrimmedMean(0.2).aggregate(base, updates)["steps"]) == 7


def test_trimmed_mean_and_median_per_component() -> None:
    base = {"w": torch.zeros(3)}
    values = [
        [1.0, 5.0, -2.0],
        [2.0, 4.0, -1.0],
        [3.0, 3.0, 0.0],
        [4.0, 2.0, 1.0],
        [100.0, 1.0, 2.0],
    ]
    updates = [_update(f"n{i}", 1.0, {"w": torch.tensor(v)}) for i, v in enumerate(values)]
    # beta 0.2 of 5: one value dropped at each end, the middle three averaged.
    torch.testing.assert_close(
        TrimmedMean(0.2).aggregate(base, updates)["w"], torch.tensor([3.0, 3.0, 0.0])
    )
    torch.testing.assert_close(
        Median().aggregate(base, updates)["w"], torch.tensor([3.0, 3.0, 0.0])
    )
    even = updates[:4]
    torch.testing.assert_close(Median().aggregate(base, even)["w"], torch.tensor([2.5, 3.5, -0.5]))


def test_withheld_and_sparse_components_count_as_zero() -> None:
    base = {"w": torch.zeros(4), "v": torch.zeros(2)}
    a = {
        "w": SparseTensor(torch.tensor([0, 2]), torch.tensor([4.0, 8.0]), (4,)),
        "v": torch.ones(2),
    }
    b = {"w": torch.full((4,), 2.0)}  # b withheld "v"
    c = {"w": torch.full((4,), 6.0), "v": torch.full((2,), 3.0)}
    merged = Median().aggregate(base, [_update("a", 1, a), _update("b", 1, b), _update("c", 1, c)])
    torch.testing.assert_close(merged["w"], torch.tensor([4.0, 2.0, 6.0, 2.0]))
    torch.testing.assert_close(merged["v"], torch.tensor([1.0, 1.0]))


def test_norm_bounded_clips_each_update_then_averages_by_weight() -> None:
    base = {"w": torch.zeros(2)}
    small, big = torch.tensor([0.3, 0.4]), torch.tensor([30.0, 40.0])  # norms 0.5 and 50
    merged = NormBounded(max_norm=1.0).aggregate(
        base, [_update("a", 1, {"w": small}), _update("b", 1, {"w": big})]
    )
    torch.testing.assert_close(merged["w"], (small + big / 50.0) / 2)


def test_the_same_updates_give_the_same_bits_whatever_the_strategy_reads_twice() -> None:
    base, updates, _ = _federation("scaled")
    for name in AggregationName:
        setting = Aggregation(
            name=name, max_norm=1.0 if name is AggregationName.NORM_BOUNDED else None
        )
        first = strategy_for(setting).aggregate(base, updates)
        again = strategy_for(setting).aggregate(base, list(updates))
        assert all(torch.equal(first[n], again[n]) for n in first), name


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="needs max_norm"):
        Aggregation(name=AggregationName.NORM_BOUNDED)
    with pytest.raises(ValueError, match="beta must be in"):
        TrimmedMean(0.5)
    with pytest.raises(ValueError, match="needs at least one update"):
        Median().aggregate({"w": torch.zeros(1)}, [])


def test_fedadam_is_adam_on_the_averaged_delta_with_its_moments_carried_over() -> None:
    base, updates, _ = _federation("scaled")
    honest = updates[:4]
    adam = strategy_for(Aggregation(name=AggregationName.FEDADAM, server_lr=0.05))
    model, state = adam.aggregate_with_state(base, honest, None)
    assert state is not None
    mean = weighted_mean_delta(base, honest)
    for name in ("conv.weight", "conv.bias"):
        m = 0.1 * mean[name]
        v = 0.01 * mean[name] ** 2
        expected = base[name].double() + 0.05 * m / (v.sqrt() + 1e-3)
        torch.testing.assert_close(model[name].double(), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(state[f"m/{name}"].double(), m, rtol=1e-5, atol=1e-9)
        torch.testing.assert_close(state[f"v/{name}"].double(), v, rtol=1e-5, atol=1e-12)
    assert int(model["steps"]) == 7
    assert "m/steps" not in state
    # The second round starts from the stored moments, not from zero.
    second, later = adam.aggregate_with_state(model, honest, state)
    fresh, _ = adam.aggregate_with_state(model, honest, None)
    assert later is not None
    torch.testing.assert_close(later["m/conv.bias"].double(), 0.9 * m + 0.1 * mean["conv.bias"],
                               rtol=1e-4, atol=1e-9)  # fmt: skip
    assert not torch.equal(second["conv.weight"], fresh["conv.weight"])
    # The same inputs give the same bits, whatever was computed before.
    again, again_state = adam.aggregate_with_state(model, honest, state)
    assert all(torch.equal(again[n], second[n]) for n in second)
    assert again_state is not None
    assert all(torch.equal(again_state[k], later[k]) for k in later)


def test_fedadam_refuses_a_state_of_the_wrong_shape() -> None:
    base, updates, _ = _federation("scaled")
    adam = strategy_for(Aggregation(name=AggregationName.FEDADAM))
    bad = {"m/conv.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"server state m/conv.bias has shape \(3,\)"):
        adam.aggregate_with_state(base, updates[:4], bad)
