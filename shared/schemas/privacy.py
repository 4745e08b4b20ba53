"""How a node must protect a released update, and what its releases cost."""

from __future__ import annotations

from enum import StrEnum

from pydantic import Field

from shared.schemas.base import _Strict


class Mechanism(StrEnum):
    """What protects a released update (docs/privacy.md explains each)."""

    NONE = "none"
    PARTIAL = "partial"
    """Largest-magnitude fraction only (Shokri and Shmatikov 2015); not differential privacy."""
    SVT = "svt"
    """Sparse Vector Technique (Lyu, Su and Li 2017): epsilon-DP per round."""
    GAUSSIAN = "gaussian"
    """L2 clipping plus Gaussian noise (McMahan et al. 2018): (epsilon, delta)-DP."""
    DPSGD = "dpsgd"
    """Patient-level DP-SGD inside local training (Abadi et al. 2016): (epsilon, delta)-DP
    per patient over the whole run."""


class PrivacyUnit(StrEnum):
    """Whose data a guarantee protects: two neighbouring inputs differ in this much."""

    PATIENT = "patient"
    """One patient (a case) added or removed."""
    UPDATE = "update"
    """The whole update may differ (every patient of the node at once)."""
    NONE = "none"
    """No differential-privacy guarantee."""


class MetricsRelease(StrEnum):
    """How the numbers a node reports beside its update (losses, Dice, HD95) leave it."""

    EXACT = "exact"
    """As measured; only under a mechanism without a DP guarantee."""
    WITHHELD = "withheld"
    """Not sent at all; the default under every DP mechanism."""
    LAPLACE = "laplace"
    """Per-region Dice sums and the case count with Laplace noise, paid from the ledger."""


class SelectionScope(StrEnum):
    MODEL = "model"
    TENSOR = "tensor"


class PrivacyPolicy(_Strict):
    """How a node must protect its update; set per run, tightened by a node's local policy."""

    mechanism: Mechanism = Mechanism.NONE
    fraction: float = Field(default=0.1, gt=0.0, le=1.0)
    """partial, svt: share at most ceil(fraction * n) components."""
    scope: SelectionScope = SelectionScope.MODEL
    """partial: select over the whole model or within each tensor."""
    clip: float | None = Field(default=None, gt=0.0)
    """partial, svt: clip each component to [-clip, clip] (gamma). Required for svt."""
    epsilon: float | None = Field(default=None, gt=0.0)
    """svt: the whole per-round privacy loss (threshold + queries + release)."""
    threshold: float | None = Field(default=None, ge=0.0)
    """svt: the threshold tau on clipped magnitudes; None derives it from clip."""
    noise_multiplier: float | None = Field(default=None, gt=0.0)
    """gaussian, dpsgd: sigma; the noise standard deviation is sigma * l2_clip."""
    l2_clip: float | None = Field(default=None, gt=0.0)
    """gaussian: the update's L2 norm is clipped to this (S); dpsgd: each patient's gradient (C)."""
    delta: float = Field(default=1e-5, gt=0.0, lt=1.0)
    """gaussian, dpsgd: the delta at which epsilon is reported (dpsgd: below 1 / patients)."""
    sample_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    """dpsgd: q, the probability that a patient is in a step's batch (Poisson sampling)."""
    target_epsilon: float | None = Field(default=None, gt=0.0)
    """dpsgd: the whole run's epsilon; sigma is derived from it when noise_multiplier is unset."""
    metrics: MetricsRelease | None = None
    """How reported numbers leave the node; None: exact without DP, withheld under DP."""
    metrics_epsilon: float | None = Field(default=None, gt=0.0)
    """metrics laplace: the epsilon each report of noised numbers costs."""
    exclude: tuple[str, ...] = ()
    """Tensor names, or regular expressions (full match), that never leave the node."""


class PrivacySpend(_Strict):
    """What one release cost, as the mechanism states it; epsilon None means no DP claim."""

    mechanism: Mechanism | MetricsRelease
    """An update's mechanism, or MetricsRelease.LAPLACE for noised reported numbers."""
    epsilon: float | None = Field(default=None, ge=0.0)
    delta: float = Field(default=0.0, ge=0.0, lt=1.0)
    accounting: str
    """How epsilon was derived, e.g. 'SVT (Lyu et al. 2017, Alg. 1)' or 'RDP (Opacus)'."""
    unit: PrivacyUnit = PrivacyUnit.UPDATE
    parameters: dict[str, float | int | str | None] = Field(default_factory=dict)
    """Public settings only. A spend composed in Renyi DP carries noise_multiplier (in
    units of its L2 sensitivity), sample_rate and steps (shared.privacy.accounting)."""


class PrivacyTotal(_Strict):
    """A node's cumulative spend over every release it has made, from its own ledger."""

    epsilon: float | None = Field(ge=0.0)
    """None when some release carried no DP guarantee (infinite epsilon)."""
    delta: float = Field(ge=0.0, lt=1.0)
    releases: int = Field(ge=0)
    accounting: str
    ledger_id: str | None = Field(default=None, max_length=64)
    """The node's ledger; a new id (or a lower epsilon under the same one) is a regression."""
    seq: int | None = Field(default=None, ge=0)
    """The ledger's last sequence number."""
