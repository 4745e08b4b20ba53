"""The mechanism registry: one entry per Mechanism, validation, tightening, costs."""

from __future__ import annotations

import re

import pytest
import torch

from shared.errors import ConfigurationError
from shared.privacy.accounting import dpsgd_epsilon
from shared.privacy.mechanisms import (
    MECHANISMS,
    mechanism_for,
    reported_numbers,
    validate_run_policy,
)
from shared.schemas import (
    Mechanism,
    MetricsRelease,
    PrivacyPolicy,
    PrivacyUnit,
    TrainingPlan,
)

PLAN = TrainingPlan(max_steps=20, batch_size=4)
DPSGD = PrivacyPolicy(mechanism=Mechanism.DPSGD, sample_rate=0.1, l2_clip=1.0, target_epsilon=8)


def test_registry_has_one_mechanism_per_enum_member() -> None:
    assert sorted(MECHANISMS) == sorted(Mechanism)
    assert all(MECHANISMS[m].name is m for m in Mechanism)


@pytest.mark.parametrize(
    ("mechanism", "dp", "unit"),
    [
        (Mechanism.NONE, False, PrivacyUnit.NONE),
        (Mechanism.PARTIAL, False, PrivacyUnit.NONE),
        (Mechanism.SVT, True, PrivacyUnit.UPDATE),
        (Mechanism.GAUSSIAN, True, PrivacyUnit.UPDATE),
        (Mechanism.DPSGD, True, PrivacyUnit.PATIENT),
    ],
)
def test_mechanism_states_its_guarantee_and_unit(
    mechanism: Mechanism, dp: bool, unit: PrivacyUnit
) -> None:
    spec = mechanism_for(mechanism)
    assert (spec.differentially_private, spec.unit) == (dp, unit)
    default = MetricsRelease.WITHHELD if dp else MetricsRelease.EXACT
    assert reported_numbers(PrivacyPolicy(mechanism=mechanism)) is default


def test_dpsgd_validation_derives_sigma_for_the_whole_run() -> None:
    policy = validate_run_policy(DPSGD, PLAN, rounds=5)
    sigma = policy.noise_multiplier
    assert sigma is not None
    assert dpsgd_epsilon(sigma, 0.1, 100, 1e-5) <= 8.0 < dpsgd_epsilon(sigma - 2e-3, 0.1, 100, 1e-5)
    cost = mechanism_for(Mechanism.DPSGD).round_cost(policy, PLAN)
    assert cost.unit is PrivacyUnit.PATIENT
    assert cost.parameters == {"noise_multiplier": sigma, "sample_rate": 0.1, "steps": 20,
                               "l2_clip": 1.0, "normaliser": 4}  # fmt: skip
    assert cost.epsilon == dpsgd_epsilon(sigma, 0.1, 20, 1e-5)


def test_dpsgd_validation_refuses_a_sigma_that_misses_the_target() -> None:
    policy = DPSGD.model_copy(update={"noise_multiplier": 0.5})
    whole = dpsgd_epsilon(0.5, 0.1, 100, 1e-5)
    message = (
        f"noise_multiplier 0.5 gives a whole-run epsilon of {whole:.4g} over 5 rounds of 20 "
        "steps, above target_epsilon 8"
    )
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        validate_run_policy(policy, PLAN, rounds=5)


def test_dpsgd_counts_steps_not_epochs() -> None:
    with pytest.raises(ConfigurationError, match=r"set plan\.local_epochs=1 and plan\.max_steps"):
        validate_run_policy(DPSGD, PLAN.model_copy(update={"local_epochs": 2}), rounds=1)


def test_tighten_takes_every_stricter_setting() -> None:
    run = PrivacyPolicy(
        mechanism=Mechanism.SVT, fraction=0.3, clip=0.1, epsilon=10.0, exclude=("a",),
        metrics=MetricsRelease.LAPLACE, metrics_epsilon=2.0,
    )  # fmt: skip
    local = PrivacyPolicy(mechanism=Mechanism.SVT, fraction=0.1, clip=0.5, epsilon=4.0,
                          exclude=("b",), metrics=MetricsRelease.WITHHELD)  # fmt: skip
    tightened = mechanism_for(Mechanism.SVT).tighten(run, local)
    assert (tightened.fraction, tightened.clip, tightened.epsilon) == (0.1, 0.1, 4.0)
    assert tightened.exclude == ("a", "b")
    assert tightened.metrics is MetricsRelease.WITHHELD
    dpsgd = mechanism_for(Mechanism.DPSGD).tighten(
        DPSGD.model_copy(update={"noise_multiplier": 1.0}),
        DPSGD.model_copy(update={"noise_multiplier": 2.0, "sample_rate": 0.2, "delta": 1e-7}),
    )
    assert (dpsgd.noise_multiplier, dpsgd.sample_rate, dpsgd.delta) == (2.0, 0.1, 1e-7)


def test_dpsgd_release_is_the_delta_itself_at_the_round_cost() -> None:
    policy = validate_run_policy(DPSGD, PLAN, rounds=1)
    delta = {"w": torch.tensor([0.5, -2.0, 0.1, 1.0])}
    spec = mechanism_for(Mechanism.DPSGD)
    dense, sparse, spend = spec.release(delta, policy, PLAN, torch.Generator().manual_seed(0))
    assert torch.equal(dense["w"], delta["w"])
    assert sparse == {}
    assert spend == spec.round_cost(policy, PLAN)  # post-processing: nothing more to pay


@pytest.mark.parametrize(
    ("update", "message"),
    [
        ({"sample_rate": 5e-5}, "sample_rate 5e-05 is below 0.0001"),
        ({"target_epsilon": None, "noise_multiplier": 1e-3}, "noise_multiplier 0.001 is outside"),
        ({"target_epsilon": None, "noise_multiplier": 2e4}, "noise_multiplier 20000 is outside"),
    ],
)
def test_dpsgd_refuses_settings_the_accountant_cannot_hold(
    update: dict[str, float | None], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(message)):
        validate_run_policy(DPSGD.model_copy(update=update), PLAN, rounds=1)
