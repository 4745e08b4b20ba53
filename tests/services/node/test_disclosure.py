"""services.node.disclosure: which numbers an evaluation report carries, and what they cost."""

from __future__ import annotations

import torch

from services.node.disclosure import EXACT_SPEND, WITHHELD_SPEND, evaluation_numbers
from services.node.evaluation import Validation
from shared.schemas import MetricsRelease, PrivacyPolicy, RegionDice, UpdateMetrics

LAPLACE = PrivacyPolicy(metrics=MetricsRelease.LAPLACE, metrics_epsilon=0.5)


def test_laplace_without_validation_cases_releases_nothing_at_no_cost() -> None:
    metrics, count, spends = evaluation_numbers(
        MetricsRelease.LAPLACE, LAPLACE, None, 0, torch.Generator().manual_seed(0)
    )
    assert metrics == UpdateMetrics(protection=MetricsRelease.LAPLACE)
    assert count is None
    assert spends == [WITHHELD_SPEND]


def test_laplace_report_pays_its_epsilon_and_exact_pays_nothing_but_says_so() -> None:
    validation = Validation(dice=RegionDice(tc=0.5, wt=0.7, et=0.3, mean=0.5), hd95=None)
    _, count, spends = evaluation_numbers(
        MetricsRelease.LAPLACE, LAPLACE, validation, 12, torch.Generator().manual_seed(0)
    )
    assert count is not None
    assert [s.epsilon for s in spends] == [0.5]
    exact = evaluation_numbers(MetricsRelease.EXACT, PrivacyPolicy(), validation, 12,
                               torch.Generator())  # fmt: skip
    assert exact[1:] == (12, [EXACT_SPEND])
