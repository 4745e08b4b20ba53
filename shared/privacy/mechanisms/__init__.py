"""The registry of privacy mechanisms: one entry per ``Mechanism``, one module each."""

from __future__ import annotations

from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.privacy.mechanisms.dpsgd import PatientDpSgd
from shared.privacy.mechanisms.gaussian import UpdateGaussian
from shared.privacy.mechanisms.none import NoProtection
from shared.privacy.mechanisms.partial import PartialSharing
from shared.privacy.mechanisms.svt import SparseVector
from shared.privacy.metrics import metrics_release
from shared.schemas import Mechanism, MetricsRelease, PrivacyPolicy, TrainingPlan

MECHANISMS: dict[Mechanism, PrivacyMechanism] = {
    m.name: m
    for m in (NoProtection(), PartialSharing(), SparseVector(), UpdateGaussian(), PatientDpSgd())
}
assert set(MECHANISMS) == set(Mechanism), "every Mechanism needs a registry entry"


def mechanism_for(mechanism: Mechanism) -> PrivacyMechanism:
    """The registered implementation of ``mechanism``."""
    return MECHANISMS[mechanism]


def reported_numbers(policy: PrivacyPolicy) -> MetricsRelease:
    """How losses, Dice, HD95 and counts leave a node under ``policy``."""
    return metrics_release(policy, mechanism_for(policy.mechanism).differentially_private)


def validate_run_policy(policy: PrivacyPolicy, plan: TrainingPlan, rounds: int) -> PrivacyPolicy:
    """The run's policy as every node will apply it, or ConfigurationError with the reason.

    The aggregator calls this when a run is created and each node again on its task.
    """
    return mechanism_for(policy.mechanism).validate(policy, plan, rounds)


__all__ = [
    "MECHANISMS",
    "PrivacyMechanism",
    "Released",
    "mechanism_for",
    "reported_numbers",
    "validate_run_policy",
]
