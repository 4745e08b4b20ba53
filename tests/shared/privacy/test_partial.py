"""Partial model sharing: exact top-k over the model or per tensor, clipping, ceil rounding."""

from __future__ import annotations

import re

import pytest
import torch

from shared.privacy.partial import partial_share, share_count, top_k_positions
from shared.schemas import SelectionScope


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _delta() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "a.weight": torch.randn(30, 7, generator=g),
        "a.bias": torch.randn(30, generator=g) * 3.0,
        "b.weight": torch.randn(5, 4, 3, generator=g) * 0.1,
        "scale": torch.tensor(-2.5),
    }


@pytest.mark.parametrize(
    ("fraction", "n", "k"),
    [(0.3, 10, 3), (0.1, 10, 1), (0.7, 10, 7), (0.1, 4_702_227, 470_223), (1.0, 9, 9), (0.5, 0, 0)],
)
def test_share_count_is_the_exact_ceiling(fraction: float, n: int, k: int) -> None:
    assert share_count(fraction, n) == k


def test_share_count_rejects_a_fraction_outside_zero_one() -> None:
    with pytest.raises(ValueError, match=_exact("fraction must be in (0, 1], got 0.0")):
        share_count(0.0, 10)


def test_partial_model_scope_keeps_exactly_the_global_top_k() -> None:
    delta = _delta()
    flat = torch.cat([t.reshape(-1) for t in delta.values()])
    k = share_count(0.2, flat.numel())
    expected = set(torch.argsort(flat.abs(), descending=True)[:k].tolist())

    sparse = partial_share(delta, 0.2, SelectionScope.MODEL, None)

    got: set[int] = set()
    offset = 0
    for name, tensor in delta.items():
        s = sparse[name]
        assert s.shape == tuple(tensor.shape)
        assert torch.equal(s.values, tensor.reshape(-1)[s.indices])
        got.update((s.indices + offset).tolist())
        offset += tensor.numel()
    assert got == expected
    assert "b.weight" in sparse
    assert sparse["b.weight"].indices.numel() == 0  # small tensor loses out globally
    assert sparse["scale"].indices.tolist() == [0]  # 0-dim: one large component


def test_partial_tensor_scope_keeps_the_top_k_of_each_tensor() -> None:
    delta = _delta()
    sparse = partial_share(delta, 0.2, SelectionScope.TENSOR, None)
    for name, tensor in delta.items():
        flat = tensor.reshape(-1)
        k = share_count(0.2, flat.numel())
        expected = torch.argsort(flat.abs(), descending=True)[:k].sort().values
        assert torch.equal(sparse[name].indices, expected)
        assert torch.equal(sparse[name].values, flat[expected])


@pytest.mark.parametrize("scope", list(SelectionScope))
def test_partial_fraction_one_keeps_everything_exactly(scope: SelectionScope) -> None:
    delta = _delta()
    sparse = partial_share(delta, 1.0, scope, None)
    for name, tensor in delta.items():
        assert torch.equal(sparse[name].to_dense(), tensor)


def test_partial_clips_the_kept_values_after_selecting_by_raw_magnitude() -> None:
    delta = {"w": torch.tensor([0.1, -50.0, 0.3, 7.0, -0.2])}
    sparse = partial_share(delta, 0.4, SelectionScope.MODEL, 1.0)
    assert sparse["w"].indices.tolist() == [1, 3]
    assert sparse["w"].values.tolist() == [-1.0, 1.0]


def test_partial_breaks_ties_towards_the_lowest_positions() -> None:
    assert top_k_positions(torch.ones(10), 3).tolist() == [0, 1, 2]
    values = torch.tensor([1.0, 3.0, 2.0, 3.0, 2.0, 2.0])
    assert top_k_positions(values, 4).tolist() == [1, 2, 3, 4]


def test_partial_rejects_a_non_positive_clip() -> None:
    with pytest.raises(ValueError, match=_exact("clip must be > 0 or None, got 0.0")):
        partial_share(_delta(), 0.1, SelectionScope.MODEL, 0.0)
