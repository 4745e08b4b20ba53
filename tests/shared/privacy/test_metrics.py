"""Reported numbers under DP: Laplace-noised Dice sums at the stated scale, or nothing."""

from __future__ import annotations

import statistics

import pytest
import torch

from shared.errors import ConfigurationError
from shared.privacy.metrics import (
    L1_SENSITIVITY,
    laplace_dice,
    laplace_sums,
    metrics_cost,
    validate_metrics,
)
from shared.schemas import Mechanism, MetricsRelease, PrivacyPolicy, RegionDice

DICE = RegionDice(tc=0.5, wt=0.8, et=0.2, mean=0.5)


def test_laplace_sums_noise_has_scale_four_over_epsilon() -> None:
    # 20,000 releases, fixed seed: each entry's noise is Lap(4 / epsilon), whose mean
    # absolute value is the scale and whose mean is 0. Tolerance 3 % (about 4 standard errors).
    generator = torch.Generator().manual_seed(11)
    epsilon, sums, cases = 2.0, (50.0, 80.0, 20.0), 100
    errors: list[list[float]] = [[], [], [], []]
    for _ in range(20_000):
        noisy, count = laplace_sums(sums, cases, epsilon, generator)
        for i, (got, want) in enumerate(zip((*noisy, count), (*sums, cases), strict=True)):
            errors[i].append(got - want)
    for entry in errors:
        assert statistics.fmean(abs(e) for e in entry) == pytest.approx(
            L1_SENSITIVITY / epsilon, rel=0.03
        )
        assert abs(statistics.fmean(entry)) < 0.05


def test_laplace_dice_means_are_noisy_sums_over_the_noisy_count() -> None:
    dice, count = laplace_dice(DICE, 1000, 1e6, torch.Generator().manual_seed(1))
    assert count == 1000
    assert (dice.tc, dice.wt, dice.et) == pytest.approx((0.5, 0.8, 0.2), abs=1e-4)
    empty, none = laplace_dice(DICE, 0, 0.01, torch.Generator().manual_seed(2))
    assert none >= 0
    assert all(0.0 <= v <= 1.0 for v in (empty.tc, empty.wt, empty.et))


def test_laplace_dice_is_reproducible_from_its_generator_only() -> None:
    first = laplace_dice(DICE, 10, 1.0, torch.Generator().manual_seed(3))
    again = laplace_dice(DICE, 10, 1.0, torch.Generator().manual_seed(3))
    other = laplace_dice(DICE, 10, 1.0, torch.Generator().manual_seed(4))
    assert first == again != other


def test_metrics_cost_is_counted_only_for_laplace() -> None:
    laplace = PrivacyPolicy(mechanism=Mechanism.SVT, metrics=MetricsRelease.LAPLACE,
                            metrics_epsilon=0.25)  # fmt: skip
    assert [s.epsilon for s in metrics_cost(laplace, 3)] == [0.25] * 3
    assert metrics_cost(PrivacyPolicy(mechanism=Mechanism.SVT), 3) == []


def test_exact_numbers_are_refused_beside_a_dp_update() -> None:
    policy = PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, metrics=MetricsRelease.EXACT)
    with pytest.raises(ConfigurationError, match="metrics=exact would send losses and Dice"):
        validate_metrics(policy, differentially_private=True)
    validate_metrics(policy, differentially_private=False)
