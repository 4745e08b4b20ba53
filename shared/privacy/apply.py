"""Apply a run's privacy policy to a node's weight delta: the one entry point a node calls."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.errors import NonFiniteError
from shared.privacy.exclusion import excluded_names
from shared.privacy.mechanisms import mechanism_for
from shared.privacy.mechanisms.partial import ACCOUNTING as PARTIAL_ACCOUNTING
from shared.privacy.types import Release
from shared.schemas import PrivacyPolicy, SelectionScope, TrainingPlan

__all__ = ["PARTIAL_ACCOUNTING", "apply_policy"]


def apply_policy(
    delta: Mapping[str, torch.Tensor],
    policy: PrivacyPolicy,
    generator: torch.Generator,
    plan: TrainingPlan | None = None,
) -> Release:
    """Protect a weight delta as ``policy`` says, and state what that guarantees.

    Tensors named in ``policy.exclude`` and every non-float tensor (integer counters and
    the like) never leave the node; they are listed in ``Release.excluded``. The rest goes
    through the policy's mechanism (shared.privacy.mechanisms): none (dense, unprotected),
    partial (sparse, not DP), svt (sparse, epsilon-DP per round), gaussian (dense,
    (epsilon, delta)-DP per round) or dpsgd (the delta of private training: dense, or
    its top fraction, at no further cost). The policy is validated against ``plan``
    (the run's, or a default plan) for one round.

    delta: name -> tensor (any dtype and shape), finite values in every float tensor.
    """
    plan = plan or TrainingPlan()
    mechanism = mechanism_for(policy.mechanism)
    mechanism.validate(policy, plan, 1)
    names = list(delta)
    notes: list[str] = []
    by_policy = excluded_names(names, policy.exclude)
    for pattern in policy.exclude:
        if not excluded_names(names, [pattern]):
            notes.append(f"exclude pattern {pattern!r} matched no tensor")
    non_float = [n for n in names if n not in by_policy and not delta[n].is_floating_point()]
    if by_policy:
        notes.append("withheld by the policy's exclude list: " + ", ".join(sorted(by_policy)))
    if non_float:
        notes.append(
            "non-float tensors are withheld (no mechanism protects them): " + ", ".join(non_float)
        )
    notes.extend(mechanism.unused_settings(policy))
    if policy.scope is not SelectionScope.MODEL and "scope" not in mechanism.settings:
        notes.append(f"scope is set but the {policy.mechanism.value} mechanism does not use it")
    withheld = by_policy.union(non_float)
    kept = {name: t for name, t in delta.items() if name not in withheld}
    for name, tensor in kept.items():
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(f"tensor {name!r} holds NaN or infinity; nothing is released")
    excluded = tuple(name for name in names if name in withheld)
    dense, sparse, spend = mechanism.release(kept, policy, plan, generator)
    return Release(dense=dense, sparse=sparse, excluded=excluded, spend=spend, notes=tuple(notes))
