"""The exact sum: integer limbs, so any order, and taking a term out, give the same bits."""

from __future__ import annotations

import math
import random

import pytest
import torch

from services.aggregator.aggregation.exact_sum import (
    MAX_CONTRIBUTION,
    MAX_TERMS,
    ExactSum,
    SumRangeError,
    refusal,
)
from shared.privacy.types import SparseTensor

SHAPES = {"w": torch.Size([64, 33]), "b": torch.Size([7])}


def _terms(count: int) -> list[tuple[str, float, dict[str, torch.Tensor | SparseTensor]]]:
    gen = torch.Generator().manual_seed(11)
    terms: list[tuple[str, float, dict[str, torch.Tensor | SparseTensor]]] = []
    for i in range(count):
        scale = 10.0 ** random.Random(i).choice([-30, -6, -2, 0, 3, 6])
        w = (torch.randn(SHAPES["w"], generator=gen) * scale).float()
        deltas: dict[str, torch.Tensor | SparseTensor] = {"w": w}
        if i % 2:  # a sparse delta of the bias: three released positions
            deltas["b"] = SparseTensor(torch.tensor([0, 3, 6]), torch.randn(3, generator=gen), (7,))
        else:
            deltas["b"] = torch.randn(SHAPES["b"], generator=gen)
        terms.append((f"node-{i}", float(1 + i % 5), deltas))
    return terms


def _mean_bytes(order: list[tuple[str, float, dict[str, torch.Tensor | SparseTensor]]]) -> bytes:
    total = ExactSum(SHAPES)
    for key, weight, deltas in order:
        total.add(key, weight, deltas.items())
    mean = total.mean()
    return b"".join(mean[name].numpy().tobytes() for name in sorted(mean))


def test_every_order_gives_the_same_bits() -> None:
    terms = _terms(12)
    reference = _mean_bytes(terms)
    shuffler = random.Random(5)
    for _ in range(10):
        assert _mean_bytes(shuffler.sample(terms, len(terms))) == reference


def test_the_mean_is_the_weighted_mean_to_float64_precision() -> None:
    terms = _terms(6)
    total = ExactSum(SHAPES)
    for key, weight, deltas in terms:
        total.add(key, weight, deltas.items())
    mean = total.mean()
    weights = math.fsum(w for _, w, _ in terms)
    exact = torch.zeros(SHAPES["w"], dtype=torch.float64)
    for _, weight, deltas in terms:
        value = deltas["w"]
        assert isinstance(value, torch.Tensor)
        exact += value.double() * weight
    exact /= weights
    # Each contribution is kept to 2^-57 absolute, relative to float64 elsewhere.
    error = (mean["w"] - exact).abs()
    assert bool((error <= exact.abs() * 1e-15 + len(terms) * 2.0**-56).all())
    # The sparse bias: position 1 only ever got the dense (even) nodes' values.
    even = [(w, d["b"]) for _, w, d in terms if isinstance(d["b"], torch.Tensor)]
    expected = math.fsum(w * float(b[1]) for w, b in even) / weights
    assert mean["b"][1].item() == pytest.approx(expected, rel=1e-14)


def test_taking_a_term_out_leaves_exactly_the_sum_without_it() -> None:
    terms = _terms(5)
    with_all = ExactSum(SHAPES)
    for key, weight, deltas in terms:
        with_all.add(key, weight, deltas.items())
    key, weight, deltas = terms[2]
    with_all.add(key, weight, deltas.items(), sign=-1)
    assert _mean_bytes(terms[:2] + terms[3:]) == b"".join(
        t.numpy().tobytes() for _, t in sorted(with_all.mean().items())
    )


def test_the_same_term_twice_and_an_unknown_removal_are_refused() -> None:
    total = ExactSum(SHAPES)
    key, weight, deltas = _terms(1)[0]
    total.add(key, weight, deltas.items())
    with pytest.raises(ValueError, match="already in the sum"):
        total.add(key, weight, deltas.items())
    with pytest.raises(ValueError, match="not in the sum"):
        total.add("other", weight, deltas.items(), sign=-1)
    with pytest.raises(ValueError, match="must be > 0"):
        total.add("zero", 0.0, deltas.items())


def test_at_most_max_terms_are_summed() -> None:
    total = ExactSum({"x": torch.Size([1])})
    for i in range(MAX_TERMS):
        total.add(str(i), 1.0, [("x", torch.ones(1))])
    with pytest.raises(ValueError, match=f"at most {MAX_TERMS}"):
        total.add("one more", 1.0, [("x", torch.ones(1))])
    assert total.mean()["x"].item() == 1.0


def test_the_extremes_of_the_range_do_not_overflow() -> None:
    """MAX_TERMS contributions each just inside the range, both signs, sum exactly."""
    total = ExactSum({"x": torch.Size([2])})
    largest = math.nextafter(MAX_CONTRIBUTION, 0.0)
    for i in range(MAX_TERMS):
        total.add(str(i), 1.0, [("x", torch.tensor([largest, -largest], dtype=torch.float64))])
    mean = total.mean()["x"]
    assert mean.tolist() == [largest, -largest]


def test_refusal_names_the_limit() -> None:
    assert refusal(1.0, 1000.0) is None
    assert refusal(MAX_CONTRIBUTION / 8, 7.9) is None
    message = refusal(MAX_CONTRIBUTION / 8, 8.0)
    assert message is not None
    assert "2^34" in message


@pytest.mark.parametrize("value", [2.0**34, -(2.0**34) * 1.5, float("nan"), float("inf")])
def test_a_term_beyond_the_range_is_refused_by_the_sum_itself(value: float) -> None:
    """The upload check should stop these; the sum still never wraps around silently."""
    total = ExactSum({"x": torch.Size([3])})
    with pytest.raises(SumRangeError, match="beyond the exact sum's range"):
        total.add("big", 1.0, [("x", torch.tensor([0.5, value, 1.0], dtype=torch.float64))])
    sparse = SparseTensor(torch.tensor([1]), torch.tensor([3e38]), (3,))
    with pytest.raises(SumRangeError):
        ExactSum({"x": torch.Size([3])}).add("sparse", 1.0, [("x", sparse)])
