"""The node's privacy policy handling: the policy it applies, the run's cost, the budget."""

from __future__ import annotations

import re

import pytest

from services.node.privacy import (
    delta_too_large,
    local_target_refusal,
    node_policy,
    over_budget,
    remaining_cost,
)
from shared.errors import ConfigurationError
from shared.schemas import Mechanism, MetricsRelease, PrivacyPolicy, PrivacyTotal, TrainingPlan

RUN = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.2, clip=0.01, epsilon=10.0, exclude=("a",))
PLAN = TrainingPlan(max_steps=5)


def test_node_policy_without_local_policy_is_the_run_policy() -> None:
    assert node_policy(RUN, None, PLAN, 3) == RUN


def test_node_policy_local_policy_tightens_every_parameter() -> None:
    local = PrivacyPolicy(
        mechanism=Mechanism.SVT, fraction=0.5, clip=0.001, epsilon=2.0, exclude=("b",)
    )
    applied = node_policy(RUN, local, PLAN, 3)
    assert (applied.fraction, applied.clip, applied.epsilon, applied.exclude) == (
        0.2,
        0.001,
        2.0,
        ("a", "b"),
    )
    assert applied.metrics is MetricsRelease.WITHHELD


def test_node_policy_refuses_another_mechanism_instead_of_substituting_its_own() -> None:
    local = PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=0.1)
    message = (
        "the run's privacy policy cannot be applied here: the run asks for the none mechanism "
        "but this hospital's local policy allows only gaussian"
    )
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        node_policy(PrivacyPolicy(mechanism=Mechanism.NONE), local, PLAN, 3)


def test_node_policy_refuses_a_run_policy_that_cannot_run() -> None:
    with pytest.raises(ConfigurationError, match=re.escape("needs clip (gamma) > 0")):
        node_policy(PrivacyPolicy(mechanism=Mechanism.SVT, epsilon=1.0), None, PLAN, 3)


def test_remaining_cost_covers_every_round_left_and_its_reports() -> None:
    laplace = RUN.model_copy(update={"metrics": MetricsRelease.LAPLACE, "metrics_epsilon": 0.5})
    spends = remaining_cost(laplace, PLAN, rounds_left=3, reports_per_round=2)
    # 3 updates, 2 noised Dice reports each, and the final evaluation's report.
    assert [s.epsilon for s in spends] == [10.0] * 3 + [0.5] * 7
    assert [s.epsilon for s in remaining_cost(RUN, PLAN, 2, 2)] == [10.0, 10.0]


def test_the_budget_delta_must_be_below_one_over_the_patients() -> None:
    assert delta_too_large(0.01, 100) == (
        "FEDSEG_PRIVACY_BUDGET_DELTA 0.01 is not below 1 / (number of training patients "
        "= 100); set a smaller delta, e.g. 0.001"
    )
    assert delta_too_large(0.01, 99) is None  # 0.01 < 1 / 99
    assert delta_too_large(1e-5, 0) is None  # nothing to train on, nothing to protect


def test_a_local_target_counts_what_the_run_already_spent() -> None:
    local = PrivacyPolicy(mechanism=Mechanism.DPSGD, target_epsilon=2.0)

    def total(epsilon: float | None) -> PrivacyTotal:
        return PrivacyTotal(epsilon=epsilon, delta=1e-5, releases=3, accounting="RDP")

    assert local_target_refusal(local, total(1.9)) is None
    assert local_target_refusal(None, total(50.0)) is None
    assert local_target_refusal(PrivacyPolicy(mechanism=Mechanism.DPSGD), total(50.0)) is None
    assert local_target_refusal(local, total(2.5)) == (
        "this hospital's local target of epsilon 2 per run would be passed: this run's "
        "epsilon would reach 2.5"
    )
    assert "would reach unbounded" in (local_target_refusal(local, total(None)) or "")


def test_budget_messages() -> None:
    total = PrivacyTotal(epsilon=12.5, delta=0.0, releases=2, accounting="basic composition")
    assert over_budget(total, None, 1e-5) is None
    assert over_budget(total, 20.0, 1e-5) is None
    assert over_budget(total, 10.0, 1e-5) == (
        "privacy budget exhausted: the rest of this run would bring the cumulative epsilon to "
        "12.5, over the budget of 10"
    )
    unbounded = PrivacyTotal(epsilon=None, delta=0.0, releases=1, accounting="unbounded")
    assert over_budget(unbounded, 10.0, 1e-5) == (
        "privacy budget (epsilon 10) forbids a release without a differential-privacy guarantee"
    )
