"""The FedAvg weight a node may claim for its update: never more than the run allows it.

FedAvg weights each update by the ``num_samples`` its node claims, so an unchecked claim
lets one node take the global model over (10^12 against 10 moves it by its own delta).
What a claim may be follows the run's policy (shared.privacy.mechanisms.reported_numbers):

- numbers released exactly (``none``, ``partial``): the distinct training cases the node
  used, so at most the training cases it announced, and at most what the plan lets it
  touch (``max_steps * batch_size * local_epochs``) when the plan bounds its steps; with
  neither, at most ``MAX_WEIGHT``;
- numbers withheld or noised (every DP mechanism): exactly the public weight every node
  sends (services.node.disclosure.public_weight), so no node weighs more than another.
"""

from __future__ import annotations

from shared.privacy.mechanisms import reported_numbers
from shared.schemas import MetricsRelease, PrivacyPolicy, TrainingPlan

MAX_WEIGHT = 1_000_000_000
"""The largest weight any update may claim (also what every database column can hold)."""


def weight_bound(
    policy: PrivacyPolicy, plan: TrainingPlan, announced_cases: int | None
) -> tuple[int, int, str]:
    """(lowest, highest, why) for the ``num_samples`` of an update under this run."""
    if reported_numbers(policy) is not MetricsRelease.EXACT:
        public = plan.max_steps or 1
        source = "max_steps" if plan.max_steps else "weight of 1"
        why = (
            f"under the {policy.mechanism.value} policy every node's weight is the plan's {source}"
        )
        return public, public, why
    bounds = [(MAX_WEIGHT, f"the aggregator's limit of {MAX_WEIGHT}")]
    if announced_cases is not None:
        bounds.append((announced_cases, f"the {announced_cases} training cases it announced"))
    if plan.max_steps is not None:
        touched = plan.max_steps * plan.batch_size * plan.local_epochs
        bounds.append((touched, f"the {touched} cases the plan's steps can touch"))
    highest, why = min(bounds)
    return 1, max(1, highest), why


def weight_refusal(
    claimed: int, policy: PrivacyPolicy, plan: TrainingPlan, announced_cases: int | None
) -> str | None:
    """Why ``claimed`` is not a weight this node may have, or None.

    The public weight (``plan.max_steps or 1``) is always allowed: a node whose own local
    policy withholds its numbers sends it even where the run's policy would let it send
    its sample count.
    """
    lowest, highest, why = weight_bound(policy, plan, announced_cases)
    if lowest <= claimed <= highest or claimed == (plan.max_steps or 1):
        return None
    if lowest == highest:
        return f"num_samples {claimed} is not {lowest}: {why}"
    return f"num_samples {claimed} is outside [{lowest}, {highest}]: at most {why}"
