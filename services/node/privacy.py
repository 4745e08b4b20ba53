"""The node's side of the privacy policy: tightening the run's policy, the budget check."""

from __future__ import annotations

from shared.privacy.gaussian import gaussian_spend
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyTotal


def _min(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


def tighten(run: PrivacyPolicy, local: PrivacyPolicy | None) -> PrivacyPolicy:
    """The policy a node applies: the run's, made stricter by the hospital's own.

    The aggregator cannot loosen a local policy: with a different mechanism the local one
    wins outright; with the same mechanism every parameter takes its stricter value
    (smaller fraction, clip, epsilon and L2 clip; larger noise; more exclusions).
    """
    if local is None:
        return run
    if local.mechanism != run.mechanism:
        return local
    return run.model_copy(
        update={
            "fraction": min(run.fraction, local.fraction),
            "clip": _min(run.clip, local.clip),
            "epsilon": _min(run.epsilon, local.epsilon),
            "noise_multiplier": _max(run.noise_multiplier, local.noise_multiplier),
            "l2_clip": _min(run.l2_clip, local.l2_clip),
            "delta": min(run.delta, local.delta),
            "exclude": tuple(dict.fromkeys((*run.exclude, *local.exclude))),
        }
    )


def round_cost(policy: PrivacyPolicy) -> PrivacySpend:
    """What one release under ``policy`` will cost, known before any data is touched."""
    if policy.mechanism == Mechanism.SVT:
        return PrivacySpend(mechanism=Mechanism.SVT, epsilon=policy.epsilon, accounting="SVT")
    if policy.mechanism == Mechanism.GAUSSIAN and policy.noise_multiplier is not None:
        return gaussian_spend(policy.noise_multiplier, 1, policy.delta)
    return PrivacySpend(mechanism=policy.mechanism, epsilon=None, accounting="no DP guarantee")


def over_budget(
    projected: PrivacyTotal, budget_epsilon: float | None, budget_delta: float
) -> str | None:
    """Why releasing would break the budget, or None if it fits (or there is no budget)."""
    if budget_epsilon is None:
        return None
    if projected.epsilon is None:
        return (
            f"privacy budget (epsilon {budget_epsilon:g}) forbids a release without a "
            "differential-privacy guarantee"
        )
    if projected.epsilon > budget_epsilon:
        return (
            f"privacy budget exhausted: this release would bring the cumulative epsilon to "
            f"{projected.epsilon:.4g}, over the budget of {budget_epsilon:g}"
        )
    if projected.delta > budget_delta:
        return (
            f"privacy budget exhausted: cumulative delta {projected.delta:g} would pass "
            f"the budget of {budget_delta:g}"
        )
    return None
