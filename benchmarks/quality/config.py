"""What the quality benchmark runs: its settings, cohort, model, plan and rounds."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.cohort import CohortConfig
from shared.model import ModelConfig
from shared.schemas import Mechanism, PrivacyPolicy, TrainingPlan


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark: centralised (policy None) or FedAvg under ``policy``."""

    name: str
    policy: PrivacyPolicy | None


@dataclass(frozen=True)
class QualityConfig:
    """Everything a benchmark run depends on; equal configs give equal non-private results."""

    cohort: CohortConfig
    model: ModelConfig
    plan: TrainingPlan
    rounds: int
    val_fraction: float
    settings: tuple[Setting, ...]


def standard_settings(
    fraction: float,
    clip: float,
    svt_epsilons: Sequence[float],
    l2_clip: float,
    sigmas: Sequence[float],
) -> tuple[Setting, ...]:
    """Centralised, FedAvg, partial sharing, SVT per epsilon, Gaussian per sigma."""
    svt = (
        PrivacyPolicy(mechanism=Mechanism.SVT, fraction=fraction, clip=clip, epsilon=epsilon)
        for epsilon in svt_epsilons
    )
    gaussian = (
        PrivacyPolicy(mechanism=Mechanism.GAUSSIAN, noise_multiplier=sigma, l2_clip=l2_clip)
        for sigma in sigmas
    )
    partial = PrivacyPolicy(mechanism=Mechanism.PARTIAL, fraction=fraction, clip=clip)
    return (
        Setting("centralised", None),
        Setting("fedavg", PrivacyPolicy()),
        Setting(f"partial f={fraction:g}", partial),
        *(Setting(f"svt eps={p.epsilon:g}", p) for p in svt),
        *(Setting(f"gaussian sigma={p.noise_multiplier:g}", p) for p in gaussian),
    )


def full_config() -> QualityConfig:
    """The CPU-sized benchmark: 40 cases over 4 sites, about a quarter of an hour on 2 cores.

    24^3 volumes with whole-volume crops keep a step near 0.1 s on a CPU core pair; 20
    rounds of one local epoch bring FedAvg to its plateau (centralised gets there sooner).
    The SVT and partial settings share fraction 0.3 and clip 1e-2 (a round's Adam steps move
    a weight by about 0.003 to 0.01 here); the Gaussian clip S = 10 is about the largest
    update norm, so its noise is what costs Dice, not its clipping.
    """
    return QualityConfig(
        cohort=CohortConfig(num_sites=4, total_cases=40, volume=24, seed=3),
        model=ModelConfig(init_filters=8),
        plan=TrainingPlan(max_steps=None, learning_rate=2e-3, crop_size=(24, 24, 24), seed=0),
        rounds=20,
        val_fraction=0.25,
        settings=standard_settings(0.3, 1e-2, (1e5, 1e6, 1e7), 10.0, (1e-3, 3e-3)),
    )


def tiny_config() -> QualityConfig:
    """The same pipeline in seconds: the smallest cohort, a two-level model, two rounds."""
    return QualityConfig(
        cohort=CohortConfig(num_sites=4, total_cases=8, volume=24, seed=0),
        model=ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)),
        plan=TrainingPlan(max_steps=1, learning_rate=1e-3, crop_size=(16, 16, 16), seed=0),
        rounds=2,
        val_fraction=0.5,
        settings=standard_settings(0.3, 1e-2, (1e5, 1e6, 1e7), 10.0, (1e-3, 3e-3)),
    )
