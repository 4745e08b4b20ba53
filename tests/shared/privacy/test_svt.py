"""SVT release (Lyu et al. 2017): selection, noise scales, the epsilon split, determinism."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from shared.privacy.partial import share_count
from shared.privacy.svt import (
    ACCOUNTING,
    _laplace,
    _svt_release,
    default_threshold,
    svt_budget,
    svt_release,
    thin_,
)
from shared.privacy.types import SparseTensor
from shared.schemas import Mechanism, PrivacySpend


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _delta(seed: int = 0) -> dict[str, torch.Tensor]:
    g = _gen(seed)
    return {
        "conv.weight": torch.randn(40, 10, 3, generator=g) * 0.5,
        "conv.bias": torch.randn(40, generator=g) * 0.5,
        "norm.weight": torch.randn(800, generator=g) * 0.5,
        "scale": torch.tensor(0.3),
    }


def _flat_positions(sparse: dict[str, SparseTensor], delta: dict[str, torch.Tensor]) -> set[int]:
    out: set[int] = set()
    offset = 0
    for name, tensor in delta.items():
        out.update((sparse[name].indices + offset).tolist())
        offset += tensor.numel()
    return out


def _number(spend: PrivacySpend, key: str) -> float:
    value = spend.parameters[key]
    assert isinstance(value, int | float)
    return float(value)


def _epsilon_for_query_scale(c: int, scale: float, gamma: float) -> float:
    """The epsilon under which the per-query noise Lap(2 c gamma / eps2) has ``scale``."""
    ratio = float((2.0 * c) ** (2.0 / 3.0))
    eps2 = 2.0 * c * gamma / scale
    return 2.0 * eps2 * (1.0 + ratio) / ratio


def test_svt_without_noise_selects_exactly_the_top_c_by_clipped_magnitude() -> None:
    delta = _delta()
    gamma, fraction = 1.0, 0.1
    flat = torch.cat([t.reshape(-1) for t in delta.values()])
    c = share_count(fraction, flat.numel())
    clipped = flat.abs().clamp(max=gamma)
    top = torch.argsort(clipped, descending=True)[:c]
    assert float(clipped[top[-1]]) < gamma  # the c-th largest is not a clipping tie
    tau = float(clipped[top[-1]])

    sparse, spend = _svt_release(delta, fraction, 1.0, gamma, tau, _gen(1), noise=False)

    assert _flat_positions(sparse, delta) == set(top.tolist())
    for name, tensor in delta.items():
        expected = tensor.reshape(-1)[sparse[name].indices].clamp(-gamma, gamma)
        assert torch.equal(sparse[name].values, expected)
    assert spend.parameters["c"] == c


def test_svt_without_noise_and_fraction_one_drops_nothing() -> None:
    delta = _delta()
    sparse, spend = _svt_release(delta, 1.0, 1.0, 0.4, None, _gen(2), noise=False)
    assert spend.parameters["threshold"] == 0.0
    for name, tensor in delta.items():
        assert sparse[name].shape == tuple(tensor.shape)
        assert torch.equal(sparse[name].to_dense(), tensor.clamp(-0.4, 0.4))


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 1.0])
def test_svt_never_releases_more_than_c(fraction: float) -> None:
    delta = _delta()
    n = sum(t.numel() for t in delta.values())
    c = share_count(fraction, n)
    for seed in range(40):
        sparse, _ = svt_release(delta, fraction, 1.0, 0.5, 0.0, _gen(seed))
        sizes = [s.indices.numel() for s in sparse.values()]
        assert sum(sizes) <= c
        if fraction <= 0.1:  # about half pass (noise dominates), far more than c
            assert sum(sizes) == c
        for name, s in sparse.items():
            assert s.indices.dtype == torch.int64
            assert s.values.dtype == torch.float32
            assert bool((s.indices[1:] > s.indices[:-1]).all())
            assert s.indices.numel() == 0 or int(s.indices.min()) >= 0
            assert s.indices.numel() == 0 or int(s.indices.max()) < delta[name].numel()


def test_svt_release_noise_has_the_stated_laplace_scale() -> None:
    """Mean absolute deviation of Lap(b) is b; ~60k samples give it within 3% (7 sd)."""
    n, gamma, value = 100_000, 1.0, 0.25
    delta = {"w": torch.full((n,), value)}
    epsilon = 4.0 * n * gamma / 1.0  # eps3 = epsilon / 2, so c * 2 gamma / eps3 = 1.0
    sparse, spend = svt_release(delta, 1.0, epsilon, gamma, None, _gen(3))
    scale = _number(spend, "c") * 2.0 * gamma / _number(spend, "eps3")
    assert scale == pytest.approx(1.0)
    noise = sparse["w"].values.double() - value
    assert noise.numel() > 50_000
    assert float(noise.abs().mean()) == pytest.approx(scale, rel=0.03)
    assert abs(float(noise.mean())) < 0.03 * scale


def test_svt_selection_rate_matches_the_analysis() -> None:
    """P(pass) = E_rho[P(q + nu >= T + rho)], nu ~ Lap(b), rho ~ Lap(b1); within 0.01."""
    half, gamma, tau = 50_000, 1.0, 0.5
    c = 2 * half  # fraction 1: no truncation at c
    delta = {"small": torch.zeros(half), "large": torch.full((half,), 10.0)}  # q = 0 and gamma
    epsilon = _epsilon_for_query_scale(c, 1.0, gamma)
    rates: dict[str, list[float]] = {"small": [], "large": []}
    for seed in range(20):
        sparse, spend = svt_release(delta, 1.0, epsilon, gamma, tau, _gen(100 + seed))
        for name in rates:
            rates[name].append(sparse[name].indices.numel() / half)
    b = 2 * c * gamma / _number(spend, "eps2")
    b1 = gamma / _number(spend, "eps1")
    assert b == pytest.approx(1.0)
    rho = np.linspace(-40 * b1, 40 * b1, 20_001)
    weight = np.exp(-np.abs(rho) / b1) / (2 * b1)

    def predicted(q: float) -> float:
        t = tau + rho - q
        survival = np.where(t >= 0, 0.5 * np.exp(-t / b), 1 - 0.5 * np.exp(t / b))
        return float(np.trapezoid(survival * weight, rho))

    assert predicted(0.0) == pytest.approx(0.5 * math.exp(-0.5), abs=2e-3)
    assert float(np.mean(rates["small"])) == pytest.approx(predicted(0.0), abs=0.01)
    assert float(np.mean(rates["large"])) == pytest.approx(predicted(gamma), abs=0.01)


def test_svt_clips_before_adding_noise_and_does_not_clip_again() -> None:
    n, gamma = 50_000, 1.0
    delta = {"up": torch.full((n,), 1e6), "down": torch.full((n,), -1e6)}
    epsilon = 4.0 * (2 * n) * gamma / 0.5  # release scale 0.5
    sparse, _ = svt_release(delta, 1.0, epsilon, gamma, None, _gen(4))
    up, down = sparse["up"].values, sparse["down"].values
    assert up.numel() > 10_000
    assert down.numel() > 10_000
    assert float(up.mean()) == pytest.approx(gamma, abs=0.02)
    assert float(down.mean()) == pytest.approx(-gamma, abs=0.02)
    assert float(up.abs().max()) < 20.0  # nowhere near the raw 1e6
    assert float(up.max()) > gamma  # the noisy value is not clipped back into [-gamma, gamma]


def test_svt_same_generator_seed_gives_the_identical_release() -> None:
    delta = _delta()
    first, _ = svt_release(delta, 0.1, 2.0, 0.5, None, _gen(7))
    again, _ = svt_release(delta, 0.1, 2.0, 0.5, None, _gen(7))
    other, _ = svt_release(delta, 0.1, 2.0, 0.5, None, _gen(8))
    for name in delta:
        assert torch.equal(first[name].indices, again[name].indices)
        assert torch.equal(first[name].values, again[name].values)
    assert any(not torch.equal(first[n].indices, other[n].indices) for n in delta)


def test_svt_does_not_touch_the_global_generator() -> None:
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    svt_release(_delta(), 0.1, 2.0, 0.5, None, _gen(7))
    assert torch.equal(torch.rand(3), expected)


def test_svt_spend_states_the_epsilon_split() -> None:
    delta = _delta()
    n = sum(t.numel() for t in delta.values())
    c = share_count(0.1, n)
    _, spend = svt_release(delta, 0.1, 3.0, 0.5, None, _gen(0))
    p = spend.parameters
    assert spend.mechanism is Mechanism.SVT
    assert spend.epsilon == 3.0
    assert spend.delta == 0.0
    assert spend.accounting == ACCOUNTING
    assert (p["c"], p["n"], p["gamma"]) == (c, n, 0.5)
    assert p["threshold"] == pytest.approx(0.45)
    assert p["eps3"] == 1.5
    eps1, eps2, eps3 = (_number(spend, key) for key in ("eps1", "eps2", "eps3"))
    assert eps1 + eps2 + eps3 == pytest.approx(3.0, rel=1e-12)
    assert eps2 / eps1 == pytest.approx((2 * c) ** (2 / 3), rel=1e-9)


def test_svt_budget_splits_half_to_the_release() -> None:
    budget = svt_budget(10.0, 4)
    assert budget.eps3 == 5.0
    assert budget.eps1 == pytest.approx(5.0 / (1 + 8 ** (2 / 3)))
    assert budget.epsilon == pytest.approx(10.0)


def test_svt_default_threshold_is_the_uniform_quantile() -> None:
    assert default_threshold(0.1, 2.0) == pytest.approx(1.8)
    assert default_threshold(1.0, 2.0) == 0.0


def test_svt_of_an_empty_update_releases_nothing_and_spends_nothing() -> None:
    sparse, spend = svt_release({"e": torch.empty(0, 3)}, 0.1, 1.0, 1.0, None, _gen(0))
    assert sparse["e"].indices.numel() == 0
    assert sparse["e"].shape == (0, 3)
    assert spend.epsilon == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fraction": 0.0}, "fraction must be in (0, 1], got 0.0"),
        ({"fraction": 1.5}, "fraction must be in (0, 1], got 1.5"),
        ({"epsilon": 0.0}, "epsilon must be a finite number > 0, got 0.0"),
        ({"clip": -1.0}, "clip (gamma) must be a finite number > 0, got -1.0"),
        ({"threshold": math.nan}, "threshold must be finite or None, got nan"),
    ],
)
def test_svt_rejects_invalid_arguments(kwargs: dict[str, float], message: str) -> None:
    args = {"fraction": 0.1, "epsilon": 1.0, "clip": 1.0} | kwargs
    with pytest.raises(ValueError, match=_exact(message)):
        svt_release(
            _delta(),
            fraction=args["fraction"],
            epsilon=args["epsilon"],
            clip=args["clip"],
            threshold=kwargs.get("threshold"),
            generator=_gen(0),
        )


def test_svt_rejects_a_non_float_tensor() -> None:
    with pytest.raises(
        ValueError,
        match=_exact("tensor 'steps' is torch.int64; only float tensors can be released"),
    ):
        svt_release({"steps": torch.tensor([3])}, 0.1, 1.0, 1.0, None, _gen(0))


@pytest.mark.parametrize(
    ("n", "k"), [(0, 0), (5, 0), (5, 5), (10, 3), (10, 8), (300_000, 1_234), (300_000, 200_000)]
)
def test_thin_keeps_exactly_k_of_the_true_entries(n: int, k: int) -> None:
    mask = torch.arange(2 * n) % 2 == 0  # n True entries, every other one
    original = mask.clone()
    thin_(mask, k, _gen(n + k))
    assert int(mask.sum()) == k
    assert not bool((mask & ~original).any())


def test_thin_leaves_a_mask_with_at_most_k_entries_unchanged() -> None:
    mask = torch.tensor([True, False, True])
    assert thin_(mask, 5, _gen(0)).tolist() == [True, False, True]


def test_thin_is_uniform_on_the_large_path() -> None:
    """Kept entries per tenth of 300k, 100 draws of 1000: 10k each, within 4% (about 4 sd)."""
    n, k, draws = 300_000, 1_000, 100
    g = _gen(11)
    counts = torch.zeros(10)
    for _ in range(draws):
        counts += thin_(torch.ones(n, dtype=torch.bool), k, g).reshape(10, -1).sum(dim=1)
    assert torch.allclose(counts, torch.full((10,), draws * k / 10), rtol=0.04)


def test_laplace_sampler_has_the_requested_scale_and_stays_finite() -> None:
    noise = _laplace(200_000, 2.0, _gen(5), torch.float32)
    assert bool(torch.isfinite(noise).all())
    assert float(noise.abs().mean()) == pytest.approx(2.0, rel=0.03)
    assert float((noise > 0).double().mean()) == pytest.approx(0.5, abs=0.01)
