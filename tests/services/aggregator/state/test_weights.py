"""The FedAvg weight a node may claim: exact under DP, bounded by its announcement otherwise."""

from __future__ import annotations

import pytest

from services.aggregator.state.weights import MAX_WEIGHT, weight_bound, weight_refusal
from shared.schemas import Mechanism, PrivacyPolicy, TrainingPlan

NONE = PrivacyPolicy()
SVT = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=1e-3, epsilon=10.0)
STEPS = TrainingPlan(max_steps=8, batch_size=2)
EPOCHS = TrainingPlan()


@pytest.mark.parametrize(
    ("policy", "plan", "announced", "bound"),
    [
        (NONE, EPOCHS, 10, (1, 10)),  # the cases it announced
        (NONE, STEPS, 100, (1, 16)),  # 8 steps of 2 cases touch at most 16
        (NONE, STEPS, 5, (1, 5)),
        (NONE, EPOCHS, None, (1, MAX_WEIGHT)),  # nothing announced, no step bound
        (SVT, STEPS, 10, (8, 8)),  # under DP: the plan's public max_steps, exactly
        (SVT, EPOCHS, None, (1, 1)),
    ],
)
def test_weight_bound(
    policy: PrivacyPolicy, plan: TrainingPlan, announced: int | None, bound: tuple[int, int]
) -> None:
    assert weight_bound(policy, plan, announced)[:2] == bound


def test_a_takeover_claim_is_refused_with_the_reason() -> None:
    assert weight_refusal(10**12, NONE, EPOCHS, 10) == (
        "num_samples 1000000000000 is outside [1, 10]: at most the 10 training cases it announced"
    )
    assert weight_refusal(9, SVT, STEPS, None) == (
        "num_samples 9 is not 8: under the svt policy every node's weight is the plan's max_steps"
    )
    assert weight_refusal(10, NONE, EPOCHS, 10) is None
    # A node that withholds its numbers by its own policy sends the public weight.
    assert weight_refusal(8, NONE, STEPS, 3) is None
