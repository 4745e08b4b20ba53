"""What the quality benchmark runs: its suites' settings, cohorts, models, plans and rounds."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.cohort import CohortConfig
from shared.model import ModelConfig
from shared.schemas import Aggregation, AggregationName, Mechanism, PrivacyPolicy, TrainingPlan


@dataclass(frozen=True)
class Setting:
    """One row of the benchmark: centralised (policy None) or a federation under ``policy``,
    aggregating with ``aggregation`` (FedAvg unless said otherwise)."""

    name: str
    policy: PrivacyPolicy | None
    aggregation: Aggregation = dataclasses.field(default_factory=Aggregation)


@dataclass(frozen=True)
class QualityConfig:
    """Everything a benchmark run depends on; equal configs give equal non-private results."""

    title: str
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
        title="update-level privacy (SVT, Gaussian): 40 cases over 4 sites",
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
        title="update-level privacy (SVT, Gaussian), tiny",
        cohort=CohortConfig(num_sites=4, total_cases=8, volume=24, seed=0),
        model=ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)),
        plan=TrainingPlan(max_steps=1, learning_rate=1e-3, crop_size=(16, 16, 16), seed=0),
        rounds=2,
        val_fraction=0.5,
        settings=standard_settings(0.3, 1e-2, (1e5, 1e6, 1e7), 10.0, (1e-3, 3e-3)),
    )


def patient_settings(
    sample_rate: float, l2_clip: float, epsilons: Sequence[float], delta: float
) -> tuple[Setting, ...]:
    """Centralised, FedAvg, and patient-level DP-SGD at each whole-run epsilon.

    Each DP-SGD policy names ``target_epsilon``, so the aggregator derives sigma at run
    creation for all the run's rounds (shared.privacy.mechanisms.dpsgd).
    """
    dpsgd = (
        PrivacyPolicy(
            mechanism=Mechanism.DPSGD,
            sample_rate=sample_rate,
            l2_clip=l2_clip,
            target_epsilon=epsilon,
            delta=delta,
        )
        for epsilon in epsilons
    )
    return (
        Setting("centralised", None),
        Setting("fedavg", PrivacyPolicy()),
        *(Setting(f"dpsgd eps={p.target_epsilon:g}", p) for p in dpsgd),
    )


def patient_config() -> QualityConfig:
    """Patient-level DP-SGD on a cohort large enough for it: 320 cases over 4 sites.

    DP-SGD's noise on the averaged gradient is sigma C / (q N) per component, and sigma
    grows only slowly with the steps, so it needs many patients and many steps: cohort
    seed 477 gives sites of 71, 93, 66 and 90 cases, and with a fifth held out for
    validation every site trains on 53 to 75 patients. A round is 8 steps with q = 0.125,
    an expected batch of 8 patients (about one pass over a site's patients), and the noisy
    sum is divided by batch_size 8; FedAvg and centralised train with the same batch and
    steps, so all three see each patient about as often. C = 1 sits below most patients'
    soft-Dice gradient norms, so clipping normalises rather than truncates. Adam at
    lr 2e-3, as in the update-level suite, 24^3 volumes and init_filters 8 keep a DP-SGD
    step (per-patient gradients by vmap) near 0.4 s on two CPU cores.
    """
    return QualityConfig(
        title="patient-level DP-SGD: 320 cases over 4 sites",
        cohort=CohortConfig(num_sites=4, total_cases=320, volume=24, seed=477),
        model=ModelConfig(init_filters=8),
        plan=TrainingPlan(
            max_steps=8, batch_size=8, learning_rate=2e-3, crop_size=(24, 24, 24), seed=0
        ),
        rounds=30,
        val_fraction=0.2,
        settings=patient_settings(0.125, 1.0, (1.0, 3.0, 8.0, 30.0), 1e-5),
    )


def tiny_patient_config() -> QualityConfig:
    """The patient-level suite in seconds: one DP-SGD setting, two rounds of one step."""
    return QualityConfig(
        title="patient-level DP-SGD, tiny",
        cohort=CohortConfig(num_sites=4, total_cases=8, volume=24, seed=0),
        model=ModelConfig(init_filters=8, blocks_down=(1, 1), blocks_up=(1,)),
        plan=TrainingPlan(max_steps=1, learning_rate=1e-3, crop_size=(16, 16, 16), seed=0),
        rounds=2,
        val_fraction=0.5,
        settings=patient_settings(0.5, 1.0, (8.0,), 1e-5),
    )


def _adam_name(adam: Aggregation) -> str:
    name = f"fedadam lr={adam.server_lr:g}"
    defaults = Aggregation(name=AggregationName.FEDADAM)
    for field in ("beta1", "tau"):
        if getattr(adam, field) != getattr(defaults, field):
            name += f" {field}={getattr(adam, field):g}"
    return name


def aggregation_settings(adams: Sequence[Aggregation]) -> tuple[Setting, ...]:
    """FedAvg, each FedAdam configuration, and the robust strategies (no DP)."""
    none = PrivacyPolicy()
    return (
        Setting("fedavg", none),
        *(Setting(_adam_name(adam), none, adam) for adam in adams),
        Setting("trimmed-mean", none, Aggregation(name=AggregationName.TRIMMED_MEAN)),
        Setting("median", none, Aggregation(name=AggregationName.MEDIAN)),
    )


def _adam(server_lr: float, **fields: float) -> Aggregation:
    return Aggregation(name=AggregationName.FEDADAM, server_lr=server_lr, **fields)


def aggregation_config() -> QualityConfig:
    """The update suite's cohort, model and plan under each aggregation strategy (no DP).

    What it answers: how many rounds FedAdam needs to reach what FedAvg reaches, and what
    the robust strategies cost when every node is honest.
    """
    return dataclasses.replace(
        full_config(),
        title="aggregation strategies (no DP): 40 cases over 4 sites",
        settings=aggregation_settings(
            (_adam(0.003), _adam(0.01), _adam(0.03), _adam(0.1), _adam(0.02, beta1=0.0, tau=0.01))
        ),
    )


def tiny_aggregation_config() -> QualityConfig:
    return dataclasses.replace(
        tiny_config(),
        title="aggregation strategies, tiny",
        settings=aggregation_settings((_adam(0.01),)),
    )
