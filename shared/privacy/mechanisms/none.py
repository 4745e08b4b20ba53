"""No protection: the delta leaves the node as computed."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyUnit, TrainingPlan


class NoProtection(PrivacyMechanism):
    name = Mechanism.NONE
    unit = PrivacyUnit.NONE
    differentially_private = False
    citation = "McMahan et al., AISTATS 2017 (FedAvg)"

    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        dense = {name: t.detach() for name, t in kept.items()}
        return dense, {}, self.round_cost(policy, plan)

    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        return PrivacySpend(
            mechanism=self.name, epsilon=None, accounting="no protection", unit=self.unit
        )

    def describe(self, policy: PrivacyPolicy) -> str:
        return "none (updates sent unprotected)"
