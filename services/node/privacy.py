"""The node's side of the privacy policy: the policy it applies, what a run costs, the budget."""

from __future__ import annotations

from shared.errors import ConfigurationError
from shared.privacy.mechanisms import mechanism_for, validate_run_policy
from shared.privacy.metrics import metrics_cost
from shared.schemas import PrivacyPolicy, PrivacySpend, PrivacyTotal, TrainingPlan


def node_policy(
    run: PrivacyPolicy, local: PrivacyPolicy | None, plan: TrainingPlan, rounds: int
) -> PrivacyPolicy:
    """The policy a node applies: the run's, made stricter by the hospital's own.

    The aggregator cannot loosen a local policy. When the run asks for another mechanism
    than the local policy allows, the node applies neither: it raises ConfigurationError
    with the reason, and the caller declines the round. With the same mechanism every
    setting takes its stricter value (PrivacyMechanism.tighten). The result is validated
    with the same code the aggregator ran at creation.
    """
    try:
        policy = validate_run_policy(run, plan, rounds)
        if local is None:
            return policy
        if local.mechanism != run.mechanism:
            raise ConfigurationError(
                f"the run asks for the {run.mechanism.value} mechanism but this hospital's "
                f"local policy allows only {local.mechanism.value}"
            )
        tightened = mechanism_for(run.mechanism).tighten(policy, local)
        return validate_run_policy(tightened, plan, rounds)
    except ConfigurationError as err:
        raise ConfigurationError(f"the run's privacy policy cannot be applied here: {err}") from err


def remaining_cost(
    policy: PrivacyPolicy, plan: TrainingPlan, rounds_left: int, reports_per_round: int
) -> list[PrivacySpend]:
    """What the rest of a run costs: ``rounds_left`` updates, their reports, one evaluation.

    Known from public settings only, so a node can refuse a run that does not fit its
    budget before it trains at all, rather than run out half way.
    """
    cost = mechanism_for(policy.mechanism).round_cost(policy, plan)
    spends = [cost] * rounds_left
    spends += metrics_cost(policy, reports_per_round * rounds_left + 1)
    return spends


def delta_too_large(delta: float, patients: int) -> str | None:
    """Why a patient-level ``delta`` is too large for ``patients`` training patients, or None.

    Checked once, locally, at start-up against the node's own budget delta (the delta its
    ledger composes at): checked per task against a delta the aggregator picks, the yes or
    no would let it binary-search the private number of patients.
    """
    if delta * patients < 1.0:
        return None
    return (
        f"FEDSEG_PRIVACY_BUDGET_DELTA {delta:g} is not below 1 / (number of training patients "
        f"= {patients}); set a smaller delta, e.g. {0.1 / patients:.1g}"
    )


def local_target_refusal(local: PrivacyPolicy | None, run_so_far: PrivacyTotal) -> str | None:
    """Why the rest of a run would pass the hospital's own ``target_epsilon`` for one run.

    ``run_so_far`` composes what this run already cost (the ledger's spends for this
    federation and run) with what the rest would cost, so an aggregator that understates a
    run's rounds in each task still meets the local target once the spends add up.
    """
    if local is None or local.target_epsilon is None:
        return None
    if run_so_far.epsilon is not None and run_so_far.epsilon <= local.target_epsilon:
        return None
    spent = "unbounded" if run_so_far.epsilon is None else f"{run_so_far.epsilon:.4g}"
    return (
        f"this hospital's local target of epsilon {local.target_epsilon:g} per run would be "
        f"passed: this run's epsilon would reach {spent}"
    )


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
            f"privacy budget exhausted: the rest of this run would bring the cumulative "
            f"epsilon to {projected.epsilon:.4g}, over the budget of {budget_epsilon:g}"
        )
    if projected.delta > budget_delta:
        return (
            f"privacy budget exhausted: cumulative delta {projected.delta:g} would pass "
            f"the budget of {budget_delta:g}"
        )
    return None
