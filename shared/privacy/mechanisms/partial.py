"""Partial model sharing as a mechanism: the largest-magnitude fraction, not DP."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.errors import ConfigurationError
from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.privacy.partial import partial_share, share_count
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyUnit, TrainingPlan

ACCOUNTING = "partial sharing (Shokri and Shmatikov 2015): not differential privacy"


class PartialSharing(PrivacyMechanism):
    name = Mechanism.PARTIAL
    unit = PrivacyUnit.NONE
    differentially_private = False
    sends_sparse = True
    settings = frozenset({"fraction", "scope", "clip"})
    citation = "Shokri and Shmatikov, CCS 2015; Li et al., MLMI 2019"

    def validate(self, policy: PrivacyPolicy, plan: TrainingPlan, rounds: int) -> PrivacyPolicy:
        checked = super().validate(policy, plan, rounds)
        check_fraction(checked)
        return checked

    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        sparse = partial_share(kept, policy.fraction, policy.scope, policy.clip)
        spend = self.round_cost(policy, plan).model_copy(
            update={
                "parameters": {
                    "fraction": policy.fraction,
                    "scope": policy.scope.value,
                    "clip": policy.clip,
                    "n": sum(t.numel() for t in kept.values()),
                    "k": sum(s.indices.numel() for s in sparse.values()),
                }
            }
        )
        return {}, sparse, spend

    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        return PrivacySpend(
            mechanism=self.name, epsilon=None, accounting=ACCOUNTING, unit=self.unit
        )

    def describe(self, policy: PrivacyPolicy) -> str:
        return f"partial sharing of fraction {policy.fraction:g} (not differential privacy)"


def check_fraction(policy: PrivacyPolicy) -> None:
    """ConfigurationError unless the policy's fraction can select components."""
    try:
        share_count(policy.fraction, 0)
    except ValueError as err:
        raise ConfigurationError(
            f"the {policy.mechanism.value} mechanism needs fraction in (0, 1], "
            f"but the policy has fraction={policy.fraction!r}"
        ) from err
