"""The benchmark's own Dice of a model on every site's validation cases, whatever nodes report."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from safetensors.torch import load as load_safetensors

from benchmarks.quality.config import QualityConfig
from benchmarks.quality.results import weighted_dice
from benchmarks.quality.sites import SiteData
from services.node.evaluation import validate
from shared.model import build_model
from shared.schemas import RegionDice


def score_model(
    model: torch.nn.Module, config: QualityConfig, sites: Sequence[SiteData], device: torch.device
) -> RegionDice:
    """Dice over all sites' validation cases: ``validate`` per site, weighted by its cases.

    Equal, up to rounding, to the Dice of the pooled validation cases (weighted_dice), which
    is what the centralised baseline scores after every round.
    """
    return weighted_dice(
        [
            (validate(model, site.val, config.plan.crop_size, device).dice, len(site.val))
            for site in sites
        ]
    )


class ModelScores:
    """Dice of published model versions by SHA-256, each scored once.

    Under a DP policy nodes withhold their numbers, so the benchmark downloads every
    round's base model itself (``fetch(sha256)``: safetensors bytes, loaded without
    unpickling anything) into ``build_model(config.model)`` and scores it with score_model.
    """

    def __init__(
        self,
        fetch: Callable[[str], bytes],
        config: QualityConfig,
        sites: Sequence[SiteData],
        device: torch.device,
    ) -> None:
        self._fetch, self._config, self._sites, self._device = fetch, config, sites, device
        self._model = build_model(config.model)
        self._scores: dict[str, RegionDice] = {}

    def __call__(self, sha256: str) -> RegionDice:
        cached = self._scores.get(sha256)
        if cached is not None:
            return cached
        self._model.load_state_dict(load_safetensors(self._fetch(sha256)))
        score = score_model(self._model, self._config, self._sites, self._device)
        self._scores[sha256] = score
        return score
