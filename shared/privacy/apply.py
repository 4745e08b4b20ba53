"""Apply a run's privacy policy to a node's weight delta: the one entry point a node calls."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from shared.errors import ConfigurationError, NonFiniteError
from shared.privacy.exclusion import excluded_names
from shared.privacy.gaussian import gaussian_release, gaussian_spend
from shared.privacy.partial import partial_share, share_count
from shared.privacy.svt import svt_release
from shared.privacy.types import Release
from shared.schemas import Mechanism, PrivacyPolicy, PrivacySpend, SelectionScope

PARTIAL_ACCOUNTING = "partial sharing (Shokri and Shmatikov 2015): not differential privacy"

_REQUIRED: dict[Mechanism, tuple[tuple[str, str], ...]] = {
    Mechanism.NONE: (),
    Mechanism.PARTIAL: (),
    Mechanism.SVT: (("clip", "clip (gamma)"), ("epsilon", "epsilon")),
    Mechanism.GAUSSIAN: (
        ("noise_multiplier", "noise_multiplier (sigma)"),
        ("l2_clip", "l2_clip (S)"),
    ),
}
_USES: dict[Mechanism, frozenset[str]] = {
    Mechanism.NONE: frozenset(),
    Mechanism.PARTIAL: frozenset({"clip"}),
    Mechanism.SVT: frozenset({"clip", "epsilon", "threshold"}),
    Mechanism.GAUSSIAN: frozenset({"noise_multiplier", "l2_clip"}),
}
_OPTIONAL = ("clip", "epsilon", "threshold", "noise_multiplier", "l2_clip")


def validate_policy(policy: PrivacyPolicy) -> None:
    """Raise ConfigurationError with a full sentence if ``policy`` cannot run as configured."""
    mechanism = policy.mechanism
    for field, _ in _REQUIRED[mechanism]:
        _required(policy, field)
    if mechanism in (Mechanism.PARTIAL, Mechanism.SVT):
        try:
            share_count(policy.fraction, 0)
        except ValueError as err:
            raise ConfigurationError(
                f"the {mechanism.value} mechanism needs fraction in (0, 1], "
                f"but the policy has fraction={policy.fraction!r}"
            ) from err


def apply_policy(
    delta: Mapping[str, torch.Tensor], policy: PrivacyPolicy, generator: torch.Generator
) -> Release:
    """Protect a weight delta as ``policy`` says, and state what that guarantees.

    Tensors named in ``policy.exclude`` and every non-float tensor (integer counters and
    the like) never leave the node; they are listed in ``Release.excluded``. The rest goes
    through the policy's mechanism:

    - none: released as is (dense); no protection.
    - partial: largest-magnitude fraction (``partial_share``); sparse; not DP.
    - svt: ``svt_release``; sparse; epsilon-DP for this round.
    - gaussian: ``gaussian_release``; dense float32; (epsilon, delta)-DP for this round
      (the node's ledger composes rounds with ``gaussian_epsilon``).

    delta: name -> tensor (any dtype and shape), finite values in every float tensor.
    """
    validate_policy(policy)
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
    notes.extend(_unused_settings(policy))
    withheld = by_policy.union(non_float)
    kept = {name: t for name, t in delta.items() if name not in withheld}
    for name, tensor in kept.items():
        if not bool(torch.isfinite(tensor).all()):
            raise NonFiniteError(f"tensor {name!r} holds NaN or infinity; nothing is released")
    excluded = tuple(name for name in names if name in withheld)

    mechanism = policy.mechanism
    if mechanism is Mechanism.NONE:
        spend = PrivacySpend(mechanism=mechanism, epsilon=None, accounting="no protection")
        dense = {name: t.detach() for name, t in kept.items()}
        return Release(dense=dense, sparse={}, excluded=excluded, spend=spend, notes=tuple(notes))
    if mechanism is Mechanism.PARTIAL:
        sparse = partial_share(kept, policy.fraction, policy.scope, policy.clip)
        spend = PrivacySpend(
            mechanism=mechanism,
            epsilon=None,
            accounting=PARTIAL_ACCOUNTING,
            parameters={
                "fraction": policy.fraction,
                "scope": policy.scope.value,
                "clip": policy.clip,
                "n": sum(t.numel() for t in kept.values()),
                "k": sum(s.indices.numel() for s in sparse.values()),
            },
        )
        return Release(dense={}, sparse=sparse, excluded=excluded, spend=spend, notes=tuple(notes))
    if mechanism is Mechanism.SVT:
        epsilon, gamma = _required(policy, "epsilon"), _required(policy, "clip")
        sparse, spend = svt_release(
            kept, policy.fraction, epsilon, gamma, policy.threshold, generator
        )
        return Release(dense={}, sparse=sparse, excluded=excluded, spend=spend, notes=tuple(notes))
    sigma, l2_clip = _required(policy, "noise_multiplier"), _required(policy, "l2_clip")
    dense = gaussian_release(kept, l2_clip, sigma, generator)
    spend = gaussian_spend(sigma, rounds=1, delta=policy.delta)
    return Release(dense=dense, sparse={}, excluded=excluded, spend=spend, notes=tuple(notes))


def _required(policy: PrivacyPolicy, field: str) -> float:
    """The policy's positive ``field``, or ConfigurationError naming what is missing."""
    label = dict(_REQUIRED[policy.mechanism]).get(field, field)
    value = getattr(policy, field)
    if value is None or not value > 0.0:
        raise ConfigurationError(
            f"the {policy.mechanism.value} mechanism needs {label} > 0, "
            f"but the policy has {field}={value!r}"
        )
    return float(value)


def _unused_settings(policy: PrivacyPolicy) -> list[str]:
    """Notes for settings the chosen mechanism ignores, so nobody mistakes them for a guarantee."""
    uses = _USES[policy.mechanism]
    notes = [
        f"{field} is set but the {policy.mechanism.value} mechanism does not use it"
        for field in _OPTIONAL
        if getattr(policy, field) is not None and field not in uses
    ]
    if policy.scope is not SelectionScope.MODEL and policy.mechanism is not Mechanism.PARTIAL:
        notes.append(f"scope is set but the {policy.mechanism.value} mechanism does not use it")
    return notes
