"""The centralised baseline: one model trained on every site's pooled training cases."""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch

from benchmarks.quality.config import QualityConfig, Setting
from benchmarks.quality.report import say_progress
from benchmarks.quality.results import SettingResult
from benchmarks.quality.scoring import score_model
from benchmarks.quality.sites import SiteData
from services.centralised.training import train_centralised
from shared.model import build_model, initial_state


def run_centralised(
    setting: Setting, config: QualityConfig, sites: Sequence[SiteData], device: torch.device
) -> SettingResult:
    """Train on the pooled training cases and score on the pooled validation cases.

    The initial model is scored as the federated settings score theirs (score_model), so
    every setting's round 0 is the same number; after each round train_centralised scores
    the pooled validation cases, which is the same Dice up to rounding.
    """
    began = time.perf_counter()
    val = [case for site in sites for case in site.val]
    model = build_model(config.model)
    model.load_state_dict(initial_state(config.model, config.plan.seed))
    initial = score_model(model, config, sites, device)
    result = train_centralised(
        config.model,
        config.plan,
        config.rounds,
        [site.train for site in sites],
        val,
        device,
        seed=config.plan.seed,
        on_round=lambda number, dice: say_progress(setting.name, number, config.rounds, dice),
    )
    return SettingResult(
        setting, [initial, *result.dice], result.steps, time.perf_counter() - began
    )
