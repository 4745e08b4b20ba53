"""Composition of privacy spends: pure epsilon adds up, Gaussian-family spends compose in RDP.

One function turns any list of ``PrivacySpend`` into the cumulative (epsilon, delta) a
privacy officer reads; the node's ledger and the aggregator's run validation both call it.

- A spend with ``epsilon=None`` has no DP guarantee: the total is unbounded (None).
- A spend whose parameters carry ``noise_multiplier``, ``sample_rate`` and ``steps`` is a
  (subsampled) Gaussian mechanism: ``steps`` releases, each sampling its units with
  probability ``sample_rate`` and adding Gaussian noise of ``noise_multiplier`` times the
  L2 sensitivity. All such spends compose in Renyi DP (Mironov 2017; Mironov, Talwar and
  Zhang 2019 for the sampled Gaussian), converted once to (epsilon, delta) at the
  target delta (Balle et al. 2020), by ``shared.privacy.rdp``.
- Every other spend is pure epsilon-DP and adds up by basic sequential composition
  (Dwork and Roth 2014, Theorem 3.14); the two groups are then added.

Every mechanism's guarantee holds for neighbouring inputs that differ in at least one
patient (an update-level guarantee covers any two inputs), so the total is a
patient-level guarantee for everything the node released.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from shared.privacy.rdp import ORDERS, RdpStep, epsilon_at
from shared.schemas import PrivacySpend, PrivacyTotal

RDP_METHOD = "RDP (sampled Gaussian, exact integer orders)"
ALPHAS = ORDERS


def rdp_epsilon(history: Sequence[RdpStep], delta: float) -> float:
    """Epsilon at ``delta`` of the composition of every (sampled) Gaussian in ``history``."""
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    merged: Counter[tuple[float, float]] = Counter()
    for sigma, rate, steps in history:
        if not 0.0 < sigma < math.inf:
            raise ValueError(f"noise_multiplier must be a finite number > 0, got {sigma}")
        if not 0.0 < rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {rate}")
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        merged[(sigma, rate)] += steps
    entries = [(sigma, rate, steps) for (sigma, rate), steps in merged.items() if steps]
    if not entries:
        return 0.0
    return epsilon_at(entries, delta)[0]


def rdp_steps(spend: PrivacySpend) -> RdpStep | None:
    """The spend's RDP history entry, or None for a pure-epsilon spend."""
    p = spend.parameters
    sigma, rate, steps = p.get("noise_multiplier"), p.get("sample_rate"), p.get("steps")
    if sigma is None and rate is None and steps is None:
        return None
    factor, rounds = p.get("sensitivity_factor"), p.get("rounds")
    if (
        rate is None
        and steps is None
        and isinstance(factor, int | float)
        and factor > 0
        and isinstance(sigma, int | float)
        and isinstance(rounds, int)
    ):
        # Ledgers written before protocol 2: an update-level Gaussian of raw sigma.
        return float(sigma) / float(factor), 1.0, rounds
    if not (
        isinstance(sigma, int | float)
        and isinstance(rate, int | float)
        and isinstance(steps, int)
        and not isinstance(steps, bool)
    ):
        raise ValueError(
            f"a {spend.mechanism.value} spend must carry numeric noise_multiplier, sample_rate "
            f"and steps together, got {sigma!r}, {rate!r}, {steps!r}"
        )
    return float(sigma), float(rate), steps


def compose(spends: Sequence[PrivacySpend], target_delta: float) -> PrivacyTotal:
    """The cumulative (epsilon, delta) of ``spends`` (module docstring: the method)."""
    if not spends:
        return PrivacyTotal(epsilon=0.0, delta=0.0, releases=0, accounting="nothing released")
    if any(s.epsilon is None for s in spends):
        return PrivacyTotal(
            epsilon=None,
            delta=0.0,
            releases=len(spends),
            accounting="unbounded: a release carried no DP guarantee",
        )
    history = [step for s in spends if (step := rdp_steps(s)) is not None]
    pure = sum(float(s.epsilon or 0.0) for s in spends if rdp_steps(s) is None)
    epsilon, delta, methods = pure, 0.0, ["basic composition"]
    if history:
        epsilon += rdp_epsilon(history, target_delta)
        delta = target_delta
        methods.append(f"{RDP_METHOD} at delta {target_delta:g} for Gaussian releases")
    if not math.isfinite(epsilon):
        return PrivacyTotal(epsilon=None, delta=delta, releases=len(spends), accounting="unbounded")
    return PrivacyTotal(
        epsilon=epsilon, delta=delta, releases=len(spends), accounting=", ".join(methods)
    )


def dpsgd_epsilon(noise_multiplier: float, sample_rate: float, steps: int, delta: float) -> float:
    """Patient-level epsilon at ``delta`` of ``steps`` DP-SGD steps (Abadi et al. 2016).

    Each step Poisson-samples patients with probability ``sample_rate``, clips each sampled
    patient's gradient to L2 norm C and adds N(0, (sigma C)^2): a sampled Gaussian
    mechanism of sensitivity C under adding or removing one patient.
    """
    return rdp_epsilon([(noise_multiplier, sample_rate, steps)], delta)


def dpsgd_noise_multiplier(
    target_epsilon: float, sample_rate: float, steps: int, delta: float, *, tolerance: float = 1e-3
) -> float:
    """The smallest sigma (within ``tolerance``) whose ``dpsgd_epsilon`` is <= target.

    Bisection on sigma; epsilon falls as sigma grows. Raises ValueError when no sigma up
    to 10^4 reaches the target.
    """
    if not 0.0 < target_epsilon < math.inf:
        raise ValueError(f"target_epsilon must be a finite number > 0, got {target_epsilon}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    low, high = 0.0, 1.0
    while dpsgd_epsilon(high, sample_rate, steps, delta) > target_epsilon:
        low, high = high, high * 2.0
        if high > 1e4:
            raise ValueError(
                f"no noise multiplier up to 1e4 reaches epsilon {target_epsilon:g} "
                f"at sample rate {sample_rate:g} over {steps} steps"
            )
    while high - low > tolerance:
        middle = (low + high) / 2.0
        if dpsgd_epsilon(middle, sample_rate, steps, delta) > target_epsilon:
            low = middle
        else:
            high = middle
    return high
