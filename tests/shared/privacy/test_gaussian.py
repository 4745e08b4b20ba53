"""Gaussian mechanism: global L2 clipping, the noise scale, and RDP accounting via Opacus."""

from __future__ import annotations

import math
import re

import pytest
import torch
from opacus.accountants import RDPAccountant

from shared.privacy.gaussian import (
    ACCOUNTING,
    composed_gaussian_epsilon,
    gaussian_epsilon,
    gaussian_release,
    gaussian_spend,
)
from shared.schemas import Mechanism, PrivacyUnit


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_gaussian_noise_std_is_sigma_times_s() -> None:
    """300k samples: the sample std is within 2% of sigma * S (about 13 sd)."""
    delta = {"a": torch.zeros(200_000), "b": torch.zeros(100, 1000)}
    out = gaussian_release(delta, l2_clip=2.0, noise_multiplier=0.8, generator=_gen(0))
    noise = torch.cat([t.reshape(-1) for t in out.values()]).double()
    assert float(noise.std()) == pytest.approx(1.6, rel=0.02)
    assert abs(float(noise.mean())) < 0.01


def test_gaussian_clips_the_global_l2_norm_over_all_tensors() -> None:
    delta = {"a": torch.full((3,), 4.0), "b": torch.full((2, 2), 3.0)}  # norm sqrt(48 + 36)
    norm = math.sqrt(84.0)
    out = gaussian_release(delta, l2_clip=1.0, noise_multiplier=1e-7, generator=_gen(1))
    for name, tensor in delta.items():
        assert out[name].dtype == torch.float32
        assert out[name].shape == tensor.shape
        assert torch.allclose(out[name], tensor / norm, atol=1e-5)


def test_gaussian_leaves_an_update_inside_the_ball_unscaled() -> None:
    delta = {"a": torch.tensor([0.3, -0.4])}
    out = gaussian_release(delta, l2_clip=1.0, noise_multiplier=1e-7, generator=_gen(2))
    assert torch.allclose(out["a"], delta["a"], atol=1e-5)


def test_gaussian_same_generator_seed_gives_the_identical_release() -> None:
    delta = {"a": torch.randn(50, generator=_gen(9))}
    first = gaussian_release(delta, 1.0, 1.0, _gen(3))
    again = gaussian_release(delta, 1.0, 1.0, _gen(3))
    assert torch.equal(first["a"], again["a"])


def test_gaussian_epsilon_is_opacus_rdp_at_sensitivity_two_s() -> None:
    """Replacement neighbours: sensitivity 2 S, so sigma = 1 is Opacus's sigma = 0.5."""
    accountant = RDPAccountant()
    for _ in range(10):
        accountant.step(noise_multiplier=0.5, sample_rate=1.0)
    assert gaussian_epsilon(1.0, 10, 1e-5) == accountant.get_epsilon(delta=1e-5)


def test_composed_gaussian_epsilon_adds_releases_with_different_sigmas() -> None:
    accountant = RDPAccountant()
    for sigma in (2.0, 2.0, 4.0):
        accountant.step(noise_multiplier=sigma / 2, sample_rate=1.0)
    assert composed_gaussian_epsilon([2.0, 4.0, 2.0], 1e-5) == pytest.approx(
        accountant.get_epsilon(delta=1e-5), rel=1e-12
    )
    assert composed_gaussian_epsilon([3.0] * 7, 1e-5) == gaussian_epsilon(3.0, 7, 1e-5)
    assert composed_gaussian_epsilon([], 1e-5) == 0.0


def test_gaussian_epsilon_grows_with_rounds() -> None:
    values = [gaussian_epsilon(4.0, rounds, 1e-5) for rounds in (0, 1, 10, 100)]
    assert values[0] == 0.0
    assert values == sorted(values)
    assert len(set(values)) == 4


def test_gaussian_epsilon_raises_no_warning_at_the_edge_of_the_order_grid() -> None:
    assert gaussian_epsilon(0.05, 1000, 1e-5) > 0.0  # optimal order is the smallest


def test_gaussian_spend_states_one_round() -> None:
    spend = gaussian_spend(2.0, 1, 1e-6)
    assert spend.mechanism is Mechanism.GAUSSIAN
    assert spend.epsilon == gaussian_epsilon(2.0, 1, 1e-6)
    assert spend.delta == 1e-6
    assert spend.accounting == ACCOUNTING
    # noise_multiplier, sample_rate and steps are the RDP terms, in sensitivity units (2 S).
    assert spend.parameters == {
        "sigma": 2.0,
        "noise_multiplier": 1.0,
        "sample_rate": 1.0,
        "steps": 1,
        "sensitivity_factor": 2.0,
    }
    assert spend.unit is PrivacyUnit.UPDATE


def test_gaussian_rejects_invalid_arguments() -> None:
    with pytest.raises(ValueError, match=_exact("l2_clip must be a finite number > 0, got 0.0")):
        gaussian_release({"a": torch.zeros(2)}, 0.0, 1.0, _gen(0))
    with pytest.raises(ValueError, match=_exact("delta must be in (0, 1), got 1.0")):
        gaussian_epsilon(1.0, 1, 1.0)
