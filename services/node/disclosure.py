"""What a node tells the aggregator beside its update: exact, withheld, or Laplace-noised."""

from __future__ import annotations

import torch

from services.node.evaluation import Validation
from shared.privacy.metrics import laplace_dice, laplace_spend
from shared.schemas import (
    MetricsRelease,
    PrivacyPolicy,
    PrivacySpend,
    PrivacyUnit,
    RegionDice,
    TrainingPlan,
    UpdateMetrics,
)

EXACT_SPEND = PrivacySpend(
    mechanism=MetricsRelease.EXACT,
    epsilon=None,
    accounting="exact numbers: no DP guarantee",
    unit=PrivacyUnit.NONE,
)
"""An evaluation report of exact numbers (a run without DP): on the ledger, unbounded."""
WITHHELD_SPEND = PrivacySpend(
    mechanism=MetricsRelease.WITHHELD,
    epsilon=0.0,
    accounting="nothing measured is released",
    unit=PrivacyUnit.PATIENT,
)
"""An evaluation report with every number withheld: on the ledger, free."""


def public_weight(mode: MetricsRelease, plan: TrainingPlan, num_samples: int) -> int:
    """The FedAvg weight a node sends: its sample count only where numbers go out exact.

    Under a DP policy the count is private, so the weight comes from the public plan: its
    max_steps (the same for every node), else 1.
    """
    if mode is MetricsRelease.EXACT:
        return num_samples
    return plan.max_steps or 1


def _noised(
    validation: Validation | None,
    cases: int,
    policy: PrivacyPolicy,
    generator: torch.Generator,
    spends: list[PrivacySpend],
) -> tuple[RegionDice | None, int | None]:
    if validation is None:
        return None, None
    epsilon = float(policy.metrics_epsilon or 0.0)
    dice, count = laplace_dice(validation.dice, cases, epsilon, generator)
    spends.append(laplace_spend(epsilon))
    return dice, count


def update_metrics(
    mode: MetricsRelease,
    policy: PrivacyPolicy,
    before: Validation | None,
    after: Validation | None,
    cases: int,
    train_loss: float,
    train_seconds: float,
    generator: torch.Generator,
) -> tuple[UpdateMetrics, list[PrivacySpend]]:
    """The numbers sent with an update and what they cost (``cases``: validation cases).

    exact: everything measured. withheld: nothing. laplace: Dice before and after, each a
    Laplace release of metrics_epsilon (laplace_dice); HD95, the loss and the time (which
    grows with the private case count) are withheld, since they have no bounded sensitivity.
    """
    if mode is MetricsRelease.EXACT:
        return UpdateMetrics(
            dice_global=before.dice if before else None,
            dice_local=after.dice if after else None,
            hd95_global=before.hd95 if before else None,
            hd95_local=after.hd95 if after else None,
            train_loss=train_loss,
            train_seconds=train_seconds,
        ), []
    if mode is MetricsRelease.WITHHELD:
        return UpdateMetrics(protection=mode), []
    spends: list[PrivacySpend] = []
    dice_global, _ = _noised(before, cases, policy, generator, spends)
    dice_local, _ = _noised(after, cases, policy, generator, spends)
    return UpdateMetrics(dice_global=dice_global, dice_local=dice_local, protection=mode), spends


def evaluation_numbers(
    mode: MetricsRelease,
    policy: PrivacyPolicy,
    validation: Validation | None,
    cases: int,
    generator: torch.Generator,
) -> tuple[UpdateMetrics, int | None, list[PrivacySpend]]:
    """(metrics, validation case count, spends) of an evaluation report, as for updates."""
    if mode is MetricsRelease.EXACT:
        metrics = UpdateMetrics(
            dice_global=validation.dice if validation else None,
            hd95_global=validation.hd95 if validation else None,
        )
        return metrics, cases, [EXACT_SPEND]
    if mode is MetricsRelease.WITHHELD:
        return UpdateMetrics(protection=mode), None, [WITHHELD_SPEND]
    spends: list[PrivacySpend] = []
    dice, count = _noised(validation, cases, policy, generator, spends)
    # No validation case: nothing was measured, so nothing is noised or paid for.
    return UpdateMetrics(dice_global=dice, protection=mode), count, spends or [WITHHELD_SPEND]
