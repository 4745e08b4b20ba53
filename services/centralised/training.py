"""Centralised training on the pooled cases, matched to a federation's rounds, epochs and steps."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from services.node.data.cases import Case
from services.node.data.crops import steps_per_epoch
from services.node.evaluation import evaluate
from services.node.training import train_local
from shared.model import ModelConfig, build_model, initial_state
from shared.schemas import RegionDice, TrainingPlan

MAX_EPOCHS = 1000
"""TrainingPlan's limit on ``local_epochs``, which the pooled plan's rounds x epochs must keep."""


def pooled_plan(plan: TrainingPlan, site_sizes: Sequence[int], rounds: int) -> TrainingPlan:
    """The plan that trains on all sites' cases pooled as long as `rounds` federated rounds do.

    In one round of `plan`, a site with n_k training cases takes E x min(ceil(n_k / B), S)
    steps (E local epochs, batch B, at most S steps per epoch). The pooled plan runs R x E
    epochs of sum_k min(ceil(n_k / B), S) steps each, capped at ceil(N / B) for N pooled
    cases, so every case is drawn as often as in the federation and, with B = 1, the total
    number of optimiser steps is the same. Learning rate, batch, crop and seed are `plan`'s.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if not site_sizes or min(site_sizes) < 1:
        raise ValueError(f"every site needs at least one training case, got {list(site_sizes)}")
    epochs = rounds * plan.local_epochs
    if epochs > MAX_EPOCHS:
        raise ValueError(
            f"rounds x local_epochs must be at most {MAX_EPOCHS}, got {rounds} x "
            f"{plan.local_epochs} = {epochs}"
        )
    per_epoch = min(
        math.ceil(sum(site_sizes) / plan.batch_size),
        sum(steps_per_epoch(size, plan) for size in site_sizes),
    )
    return plan.model_copy(update={"local_epochs": epochs, "max_steps": per_epoch})


@dataclass(frozen=True)
class CentralisedResult:
    """What train_centralised did; ``dice`` holds one entry per round (empty without val)."""

    dice: list[RegionDice]
    steps: int
    mean_loss: float
    seconds: float
    state: dict[str, torch.Tensor]


def train_centralised(
    model_config: ModelConfig,
    plan: TrainingPlan,
    rounds: int,
    sites: Sequence[Sequence[Case]],
    val: Sequence[Case],
    device: torch.device,
    *,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
    on_round: Callable[[int, RegionDice], None] | None = None,
    workers: int = 0,
) -> CentralisedResult:
    """Train one model on the training cases of every site in `sites`, pooled.

    The model starts from ``initial_state(model_config, seed)``, the federation's first global
    model for run seed `seed`, and trains with ``train_local`` (same crops, augmentation,
    loss, optimiser) under ``pooled_plan(plan, sizes, rounds)``: one Adam run, no restarts.
    After every round's share of steps it is scored on `val` (images [4, D, H, W], labels
    [3, D, H, W]) by sliding windows of ``plan.crop_size`` and ``on_round(round, dice)`` is
    called, round from 1. ``progress(step, total, loss)`` and `workers` (batch-building
    threads) are passed on to train_local.
    """
    pooled = [case for site in sites for case in site]
    sizes = [len(site) for site in sites]
    central = pooled_plan(plan, sizes, rounds)
    per_round = plan.local_epochs * steps_per_epoch(len(pooled), central)
    model = build_model(model_config)
    model.load_state_dict(initial_state(model_config, seed))
    dice: list[RegionDice] = []

    def after_step(step: int, total: int, loss: float) -> None:
        if progress is not None:
            progress(step, total, loss)
        if step % per_round == 0 and val:
            score = evaluate(model, val, plan.crop_size, device)
            dice.append(score)
            if on_round is not None:
                on_round(step // per_round, score)

    began = time.perf_counter()
    result = train_local(model, pooled, central, device, progress=after_step, workers=workers)
    state = {name: t.detach().cpu().clone() for name, t in model.state_dict().items()}
    return CentralisedResult(
        dice=dice,
        steps=result.steps,
        mean_loss=result.mean_loss,
        seconds=time.perf_counter() - began,
        state=state,
    )
