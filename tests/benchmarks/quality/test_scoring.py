"""Tests of the benchmark's own scoring: Dice pooled over sites, of models fetched as bytes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError

from benchmarks.quality.config import tiny_config
from benchmarks.quality.results import weighted_dice
from benchmarks.quality.scoring import ModelScores, score_model
from benchmarks.quality.sites import load_sites
from services.node.evaluation import validate
from shared.model import build_model, initial_state
from shared.tensors import to_bytes

CPU = torch.device("cpu")


def test_score_model_weights_each_sites_dice_by_its_validation_cases(tmp_path: Path) -> None:
    config = tiny_config()
    sites = load_sites(config, tmp_path)
    model = build_model(config.model)
    model.load_state_dict(initial_state(config.model, 0))

    score = score_model(model, config, sites, CPU)

    per_site = [
        (validate(model, site.val, config.plan.crop_size, CPU).dice, len(site.val))
        for site in sites
    ]
    assert score == weighted_dice(per_site)


def test_model_scores_load_the_fetched_bytes_and_score_each_version_once(
    tmp_path: Path,
) -> None:
    config = tiny_config()
    sites = load_sites(config, tmp_path)
    blobs = {
        "first": to_bytes(initial_state(config.model, 0)),
        "second": to_bytes(initial_state(config.model, 1)),
    }
    fetched: list[str] = []

    def fetch(sha256: str) -> bytes:
        fetched.append(sha256)
        return blobs[sha256]

    scores = ModelScores(fetch, config, sites, CPU)

    first, second, again = scores("first"), scores("second"), scores("first")

    model = build_model(config.model)
    model.load_state_dict(initial_state(config.model, 1))
    assert fetched == ["first", "second"]
    assert again == first
    assert second == score_model(model, config, sites, CPU)
    assert first != second


def test_model_scores_refuse_a_pickle_as_not_safetensors() -> None:
    scores = ModelScores(lambda _: b"\x80\x04not safetensors", tiny_config(), [], CPU)

    with pytest.raises(SafetensorError, match="Error while deserializing: header too large"):
        scores("bad")
