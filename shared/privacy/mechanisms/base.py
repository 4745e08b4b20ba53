"""What every privacy mechanism provides: validation, release, cost, tightening, description."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import ClassVar

import torch

from shared.errors import ConfigurationError
from shared.privacy.metrics import metrics_release, validate_metrics
from shared.privacy.types import SparseTensor
from shared.schemas import (
    Mechanism,
    MetricsRelease,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyUnit,
    TrainingPlan,
)

Released = tuple[dict[str, torch.Tensor], dict[str, SparseTensor], PrivacySpend]
"""(dense tensors, sparse tensors, this release's spend)."""

_METRICS_STRICTNESS = {
    MetricsRelease.EXACT: 0,
    MetricsRelease.LAPLACE: 1,
    MetricsRelease.WITHHELD: 2,
}


def _smaller(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else min(a, b)


def _larger(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


STRICTER: dict[str, Callable[[float | None, float | None], float | None]] = {
    "fraction": _smaller,
    "clip": _smaller,
    "epsilon": _smaller,
    "noise_multiplier": _larger,
    "l2_clip": _smaller,
    "delta": _smaller,
    "sample_rate": _smaller,
    "target_epsilon": _smaller,
    "metrics_epsilon": _smaller,
}
"""For each numeric policy setting, which of two values protects more."""


class PrivacyMechanism(ABC):
    """One way of protecting what leaves a node; one subclass per module, one registry.

    ``settings`` names the policy fields the mechanism reads, ``required`` those it cannot
    run without (with the label an operator knows them by).
    """

    name: ClassVar[Mechanism]
    unit: ClassVar[PrivacyUnit]
    differentially_private: ClassVar[bool]
    trains_privately: ClassVar[bool] = False
    sends_sparse: ClassVar[bool] = False
    """Whether its releases may carry sparse tensors (the aggregator refuses them otherwise)."""
    """True when the mechanism works inside local training (DP-SGD), not on the delta."""
    settings: ClassVar[frozenset[str]] = frozenset()
    required: ClassVar[tuple[tuple[str, str], ...]] = ()
    citation: ClassVar[str]

    def validate(self, policy: PrivacyPolicy, plan: TrainingPlan, rounds: int) -> PrivacyPolicy:
        """The policy as it will run (derived settings filled in), or ConfigurationError.

        The aggregator calls this when a run is created and every node again on its
        task, so a policy that cannot run is refused before anyone trains.
        """
        for field, label in self.required:
            value = getattr(policy, field)
            if value is None or not value > 0.0:
                raise ConfigurationError(
                    f"the {self.name.value} mechanism needs {label} > 0, "
                    f"but the policy has {field}={value!r}"
                )
        validate_metrics(policy, self.differentially_private)
        return policy

    @abstractmethod
    def release(
        self,
        kept: Mapping[str, torch.Tensor],
        policy: PrivacyPolicy,
        plan: TrainingPlan,
        generator: torch.Generator,
    ) -> Released:
        """Protect ``kept`` (name -> finite float tensor) as ``policy`` says."""

    @abstractmethod
    def round_cost(self, policy: PrivacyPolicy, plan: TrainingPlan) -> PrivacySpend:
        """What one round's update costs, known from public settings before any data is read."""

    @abstractmethod
    def describe(self, policy: PrivacyPolicy) -> str:
        """One line for operators, the demo and the ledger."""

    def tighten(self, run: PrivacyPolicy, local: PrivacyPolicy) -> PrivacyPolicy:
        """The run's policy made at least as strict as the hospital's own (same mechanism).

        Every numeric setting takes its stricter value (STRICTER), exclusions are united,
        and reported numbers leave in the stricter of the two ways.
        """
        update: dict[str, object] = {
            field: choose(getattr(run, field), getattr(local, field))
            for field, choose in STRICTER.items()
        }
        update["exclude"] = tuple(dict.fromkeys((*run.exclude, *local.exclude)))
        dp = self.differentially_private
        run_metrics, local_metrics = metrics_release(run, dp), metrics_release(local, dp)
        stricter = max(run_metrics, local_metrics, key=_METRICS_STRICTNESS.__getitem__)
        update["metrics"] = stricter
        return run.model_copy(update=update)

    def unused_settings(self, policy: PrivacyPolicy) -> list[str]:
        """Notes for settings this mechanism ignores, so nobody mistakes them for a guarantee."""
        return [
            f"{field} is set but the {self.name.value} mechanism does not use it"
            for field in ("clip", "epsilon", "threshold", "noise_multiplier", "l2_clip",
                          "sample_rate", "target_epsilon")
            if getattr(policy, field) is not None and field not in self.settings
        ]  # fmt: skip
