"""The update-level Gaussian mechanism (DP-FedAvg style) as a mechanism."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.privacy.gaussian import gaussian_release, gaussian_spend
from shared.privacy.mechanisms.base import PrivacyMechanism, Released
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, PrivacyUnit, TrainingPlan


class UpdateGaussian(PrivacyMechanism):
    name = Mechanism.GAUSSIAN
    unit = PrivacyUnit.UPDATE
    differentially_private = True
    settings = frozenset({"noise_multiplier", "l2_clip"})
    required = (("noise_multiplier", "noise_multiplier (sigma)"), ("l2_clip", "l2_clip (S)"))
    citation = "McMahan et al., ICLR 2018; Mironov 2017 (RDP)"

    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        sigma, l2_clip = float(policy.noise_multiplier or 0.0), float(policy.l2_clip or 0.0)
        dense = gaussian_release(kept, l2_clip, sigma, generator)
        return dense, {}, self.round_cost(policy, plan)

    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        return gaussian_spend(float(policy.noise_multiplier or 0.0), 1, policy.delta)

    def describe(self, policy: PrivacyPolicy) -> str:
        return (
            f"Gaussian, sigma {policy.noise_multiplier:g}, L2 clip {policy.l2_clip:g} "
            "(update level)"
        )
