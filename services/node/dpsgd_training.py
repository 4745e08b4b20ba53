"""Local training with patient-level DP-SGD (Abadi et al. 2016): the node's private path."""

from __future__ import annotations

import hashlib
import math
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from monai.losses.dice import DiceLoss

from services.node.data.cases import Case
from services.node.data.crops import augmented_crop_into
from services.node.evaluation import spatial_multiple, window_size
from services.node.training import TrainResult
from shared.privacy.dpsgd import (
    clip_and_sum,
    noisy_mean,
    per_sample_gradients_and_losses,
    poisson_sample,
    set_flat_gradient_,
    trainable_parameters,
)
from shared.schemas import TrainingPlan

__all__ = ["DpSgdSettings", "train_local_dpsgd"]


@dataclass(frozen=True)
class DpSgdSettings:
    """The public settings of a round of DP-SGD; the ledger accounts exactly these.

    sample_rate: q, each patient's probability of being in a step (Poisson sampling).
    noise_multiplier: sigma; the noise on the clipped sum has standard deviation sigma * C.
    l2_clip: C, the L2 norm each patient's gradient is clipped to.
    steps: optimiser steps this round (the plan's max_steps).
    normaliser: the public divisor of the noisy sum (the plan's batch_size).
    """

    sample_rate: float
    noise_multiplier: float
    l2_clip: float
    steps: int
    normaliser: int

    def __post_init__(self) -> None:
        if not 0.0 < self.sample_rate <= 1.0:
            raise ValueError(f"sample_rate must be in (0, 1], got {self.sample_rate}")
        if not 0.0 < self.noise_multiplier < math.inf:
            raise ValueError(
                f"noise_multiplier must be a finite number > 0, got {self.noise_multiplier}"
            )
        if not 0.0 < self.l2_clip < math.inf:
            raise ValueError(f"l2_clip must be a finite number > 0, got {self.l2_clip}")
        if self.steps < 1:
            raise ValueError(f"steps must be >= 1, got {self.steps}")
        if self.normaliser < 1:
            raise ValueError(f"normaliser must be >= 1, got {self.normaliser}")


def _on(generator: torch.Generator, device: torch.device) -> bool:
    """Whether ``generator`` draws on ``device`` (a bare "cuda" is the current CUDA device)."""
    if generator.device.type != device.type:
        return False
    if device.type != "cuda":
        return True
    index = torch.cuda.current_device() if device.index is None else device.index
    return generator.device.index in (None, index)


DROPOUT = 2**64 - 1
"""Spawn key of the dropout masks' seed within the crop entropy (no case key equals it)."""


def _case_key(case: Case) -> int:
    """A stable 63-bit key of the patient's case id (the same whoever else is in the set)."""
    return int.from_bytes(hashlib.sha256(case.case_id.encode()).digest()[:8], "big") >> 1


def train_local_dpsgd(
    model: torch.nn.Module,
    cases: Sequence[Case],
    plan: TrainingPlan,
    settings: DpSgdSettings,
    device: torch.device,
    *,
    sampling: torch.Generator,
    noise: torch.Generator,
    progress: Callable[[int, int, float], None] | None = None,
    crop_entropy: int | None = None,
) -> TrainResult:
    """Train `model` in place with ``settings.steps`` DP-SGD steps; it is left on `device`.

    Each step (Abadi et al., CCS 2016, Alg. 1, with patients as the unit):

    1. every patient is included with probability q, from the secret `sampling` generator
       (shared.privacy.dpsgd.poisson_sample);
    2. each included patient contributes one augmented random crop, image [4, *crop] and
       label [3, *crop], whose draws are seeded from ``plan.seed``, the step and the
       patient's index (as services.node.data.crops seeds a sample): public and
       reproducible, since only the sampling and the noise need to be secret;
    3. that patient's loss is MONAI's soft Dice of its crop (the loss of train_local) and its
       gradient, computed per patient with torch.func.vmap, is clipped to L2 norm C over all
       parameters at once; the clipped gradients are summed;
    4. N(0, sigma^2 C^2) from the secret `noise` generator (on `device`) is added to every
       component, the sum divided by ``settings.normaliser`` and handed to Adam
       (lr ``plan.learning_rate``) as the gradient.

    A step that samples nobody still takes a noise-only step, as the accounting assumes.
    At most ``plan.batch_size`` patients' crops, activations and per-patient gradients are
    held at once: the same memory as a batch of train_local, plus its gradients. The step
    runs in float32 on CPU and CUDA alike, without autocast (per-patient norms at full
    precision). Crops, augmentation and dropout masks draw from secret entropy (not the
    plan's public seed), each patient's crop keyed by its case id, so no patient's
    contribution depends on the others; torch's global generator is forked, so the
    caller's RNG is left untouched. ``crop_entropy`` fixes that entropy (tests only).

    The returned num_samples (patients sampled at least once) and mean_loss (the mean over
    steps that sampled someone of the mean per-patient loss; NaN if none did) are private
    and must not leave the node; steps is ``settings.steps``.
    ``progress(step, total_steps, loss)`` is called after every step (loss NaN when the step
    sampled nobody).
    """
    if not cases:
        raise ValueError("train_local_dpsgd needs at least one case, got none")
    if not _on(noise, device):
        raise ValueError(
            f"the noise generator must draw on the training device {device}, "
            f"but it is on {noise.device}"
        )
    multiple = spatial_multiple(model)
    sizes = {window_size(plan.crop_size, case.image.shape[1:], multiple) for case in cases}
    if len(sizes) != 1:
        raise ValueError(
            f"crop_size {list(plan.crop_size)} gives different crop sizes {sorted(sizes)} for "
            "cases of different shapes; use a crop no larger than the smallest volume"
        )
    crop = sizes.pop()
    # Crops, augmentation and dropout draw from secret entropy, and each patient's crop is
    # keyed by its own case id: what one patient contributes must not depend on which other
    # patients the node has (their positions in the list), nor be known to the aggregator.
    entropy = secrets.randbits(63) if crop_entropy is None else crop_entropy
    model.to(device)
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=plan.learning_rate)
    loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
    size = sum(p.numel() for p in trainable_parameters(model).values())
    images = np.empty((plan.batch_size, cases[0].image.shape[0], *crop), dtype=np.float32)
    labels = np.empty((plan.batch_size, cases[0].label.shape[0], *crop), dtype=np.float32)
    for case in cases:
        _ = case.foreground

    used: set[int] = set()
    losses: list[float] = []
    began = time.perf_counter()
    fork_devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(int(np.random.SeedSequence((entropy, DROPOUT)).generate_state(1)[0]))
        for step in range(settings.steps):
            members = [int(i) for i in poisson_sample(len(cases), settings.sample_rate, sampling)]
            summed = torch.zeros(size, dtype=torch.float32, device=device)
            patient_losses: list[torch.Tensor] = []
            for start in range(0, len(members), plan.batch_size):
                chunk = members[start : start + plan.batch_size]
                for slot, patient in enumerate(chunk):
                    sample_rng = np.random.default_rng(
                        np.random.SeedSequence((entropy, step, _case_key(cases[patient])))
                    )
                    augmented_crop_into(cases[patient], sample_rng, images[slot], labels[slot])
                x = torch.from_numpy(images[: len(chunk)]).to(device)
                y = torch.from_numpy(labels[: len(chunk)]).to(device)
                grads, chunk_losses = per_sample_gradients_and_losses(model, loss_fn, x, y)
                if not bool(torch.isfinite(chunk_losses).all()):
                    raise FloatingPointError(
                        f"training loss became {float(chunk_losses.sum())} at step {step + 1}; "
                        "lower the learning rate"
                    )
                summed += clip_and_sum(grads, settings.l2_clip)
                patient_losses.append(chunk_losses)
                del grads
            private = noisy_mean(
                summed, settings.noise_multiplier, settings.l2_clip, settings.normaliser, noise
            )
            optimizer.zero_grad(set_to_none=True)
            set_flat_gradient_(model, private)
            optimizer.step()
            value = float(torch.cat(patient_losses).mean()) if patient_losses else math.nan
            if members:
                losses.append(value)
            used.update(members)
            if progress is not None:
                progress(step + 1, settings.steps, value)
    return TrainResult(
        steps=settings.steps,
        num_samples=len(used),
        mean_loss=sum(losses) / len(losses) if losses else math.nan,
        seconds=time.perf_counter() - began,
    )
