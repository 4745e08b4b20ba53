"""FedAvg maths: sample weighting, sparse and withheld components counted as zero."""

from __future__ import annotations

import pytest
import torch

from services.aggregator.aggregation.fedavg import FedAvg
from services.aggregator.aggregation.strategy import WeightedUpdate
from shared.privacy.types import SparseTensor


def _update(
    node: str, weight: float, parts: dict[str, torch.Tensor | SparseTensor]
) -> WeightedUpdate:
    return WeightedUpdate(node=node, weight=weight, tensors=lambda: iter(parts.items()))


def test_dense_weighted_mean() -> None:
    base = {"w": torch.tensor([1.0, 2.0])}
    merged = FedAvg().aggregate(
        base,
        [
            _update("a", 1, {"w": torch.tensor([1.0, 1.0])}),
            _update("b", 3, {"w": torch.tensor([5.0, -1.0])}),
        ],
    )
    torch.testing.assert_close(merged["w"], torch.tensor([1.0 + 4.0, 2.0 - 0.5]))


def test_unreleased_components_count_as_zero_with_full_denominator() -> None:
    base = {"w": torch.zeros(4), "v": torch.zeros(2)}
    a = {
        "w": SparseTensor(torch.tensor([0, 2]), torch.tensor([4.0, 8.0]), (4,)),
        "v": torch.ones(2),
    }
    b = {"w": torch.full((4,), 2.0)}  # b withheld "v" entirely
    merged = FedAvg().aggregate(base, [_update("a", 1, a), _update("b", 1, b)])
    torch.testing.assert_close(merged["w"], torch.tensor([3.0, 1.0, 5.0, 1.0]))
    torch.testing.assert_close(merged["v"], torch.tensor([0.5, 0.5]))


def test_non_float_tensors_keep_base_value() -> None:
    base = {"w": torch.zeros(1), "steps": torch.tensor(7)}
    merged = FedAvg().aggregate(base, [_update("a", 2, {"w": torch.ones(1)})])
    assert int(merged["steps"]) == 7
    assert merged["steps"].dtype == torch.int64


def test_no_updates_is_an_error() -> None:
    with pytest.raises(ValueError, match="FedAvg needs at least one update"):
        FedAvg().aggregate({"w": torch.zeros(1)}, [])
