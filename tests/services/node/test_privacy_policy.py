"""The node's privacy policy handling: tightening and the budget check."""

from __future__ import annotations

from services.node.privacy import over_budget, round_cost, tighten
from shared.schemas import Mechanism, PrivacyPolicy, PrivacyTotal

RUN = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.2, clip=0.01, epsilon=10.0, exclude=("a",))


def test_without_local_policy_the_run_policy_applies() -> None:
    assert tighten(RUN, None) == RUN


def test_local_policy_tightens_every_parameter() -> None:
    local = PrivacyPolicy(
        mechanism=Mechanism.SVT, fraction=0.5, clip=0.001, epsilon=2.0, exclude=("b",)
    )
    applied = tighten(RUN, local)
    assert (applied.fraction, applied.clip, applied.epsilon, applied.exclude) == (
        0.2,
        0.001,
        2.0,
        ("a", "b"),
    )


def test_aggregator_cannot_switch_a_node_to_another_mechanism() -> None:
    local = PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=1.0, l2_clip=0.1)
    assert tighten(RUN, local) == local
    loosened = PrivacyPolicy(mechanism=Mechanism.NONE)
    assert tighten(loosened, local) == local


def test_round_cost_is_known_before_training() -> None:
    assert round_cost(RUN).epsilon == 10.0
    assert round_cost(PrivacyPolicy(mechanism=Mechanism.PARTIAL)).epsilon is None


def test_budget_messages() -> None:
    total = PrivacyTotal(epsilon=12.5, delta=0.0, releases=2, accounting="basic composition")
    assert over_budget(total, None, 1e-5) is None
    assert over_budget(total, 20.0, 1e-5) is None
    assert over_budget(total, 10.0, 1e-5) == (
        "privacy budget exhausted: this release would bring the cumulative epsilon to 12.5, "
        "over the budget of 10"
    )
    unbounded = PrivacyTotal(epsilon=None, delta=0.0, releases=1, accounting="unbounded")
    assert over_budget(unbounded, 10.0, 1e-5) == (
        "privacy budget (epsilon 10) forbids a release without a differential-privacy guarantee"
    )
