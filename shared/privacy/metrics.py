"""Reported numbers under a DP policy: withheld, or per-region Dice sums with Laplace noise."""

from __future__ import annotations

import math

import torch

from shared.errors import ConfigurationError
from shared.privacy.svt import laplace_noise
from shared.schemas import (
    MetricsRelease,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyUnit,
    RegionDice,
)

ACCOUNTING = "Laplace mechanism (Dwork and Roth 2014, Thm. 3.6), L1 sensitivity 4 per patient"
L1_SENSITIVITY = 4.0
"""Adding or removing one patient moves each of the three Dice sums by at most 1 (a case's
Dice lies in [0, 1]) and the case count by exactly 1: an L1 distance of at most 4."""


def metrics_release(policy: PrivacyPolicy, differentially_private: bool) -> MetricsRelease:
    """How reported numbers leave under ``policy``: as set, else exact only without DP."""
    if policy.metrics is not None:
        return policy.metrics
    return MetricsRelease.WITHHELD if differentially_private else MetricsRelease.EXACT


def validate_metrics(policy: PrivacyPolicy, differentially_private: bool) -> None:
    """Raise ConfigurationError when the policy's metrics setting cannot run or leaks."""
    release = metrics_release(policy, differentially_private)
    if release is MetricsRelease.EXACT and differentially_private:
        raise ConfigurationError(
            f"metrics=exact would send losses and Dice unprotected beside a "
            f"{policy.mechanism.value} update; use metrics=withheld or metrics=laplace"
        )
    if release is MetricsRelease.LAPLACE and policy.metrics_epsilon is None:
        raise ConfigurationError(
            "metrics=laplace needs metrics_epsilon > 0, but the policy has metrics_epsilon=None"
        )


def metrics_cost(policy: PrivacyPolicy, reports: int) -> list[PrivacySpend]:
    """What ``reports`` noised Dice reports cost under ``policy`` (none unless laplace)."""
    if policy.metrics is not MetricsRelease.LAPLACE or reports == 0:
        return []
    epsilon = float(policy.metrics_epsilon or 0.0)
    return [laplace_spend(epsilon) for _ in range(reports)]


def laplace_spend(epsilon: float) -> PrivacySpend:
    return PrivacySpend(
        mechanism=MetricsRelease.LAPLACE,
        epsilon=epsilon,
        delta=0.0,
        accounting=ACCOUNTING,
        unit=PrivacyUnit.PATIENT,
        parameters={"l1_sensitivity": L1_SENSITIVITY},
    )


def laplace_sums(
    sums: tuple[float, float, float], cases: int, epsilon: float, generator: torch.Generator
) -> tuple[tuple[float, float, float], float]:
    """(sum TC, sum WT, sum ET) and the case count, each plus Lap(L1_SENSITIVITY / epsilon).

    Adding or removing one patient moves the vector by at most L1_SENSITIVITY in L1, so
    this is epsilon-DP per patient (Dwork and Roth 2014, Thm. 3.6). The noise comes from
    the injected generator, which the node seeds from the OS.
    """
    if not 0.0 < epsilon < math.inf:
        raise ValueError(f"epsilon must be a finite number > 0, got {epsilon}")
    if cases < 0:
        raise ValueError(f"cases must be >= 0, got {cases}")
    noise = laplace_noise(4, L1_SENSITIVITY / epsilon, generator).tolist()
    tc, wt, et = (value + draw for value, draw in zip(sums, noise[:3], strict=True))
    return (tc, wt, et), cases + noise[3]


def laplace_dice(
    dice: RegionDice, cases: int, epsilon: float, generator: torch.Generator
) -> tuple[RegionDice, int]:
    """Mean Dice per region and the case count of ``cases``, released with epsilon-DP.

    The sums n * mean and n go through ``laplace_sums``; the released means are the noisy
    sums over the noisy count (at least 1), clamped to [0, 1], and the count is rounded:
    post-processing, free.

    Returns: the noisy RegionDice and the noisy count (an int >= 0).
    """
    sums = (dice.tc * cases, dice.wt * cases, dice.et * cases)
    noisy, noisy_count = laplace_sums(sums, cases, epsilon, generator)
    divisor = max(1.0, float(round(noisy_count)))
    tc, wt, et = (min(1.0, max(0.0, value / divisor)) for value in noisy)
    return RegionDice(tc=tc, wt=wt, et=et, mean=(tc + wt + et) / 3.0), max(0, round(noisy_count))
