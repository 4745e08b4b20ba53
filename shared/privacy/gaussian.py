"""Gaussian mechanism on a whole update (DP-FedAvg style), accounted in Renyi DP."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence

import torch

from shared.privacy.accounting import ALPHAS, rdp_epsilon
from shared.privacy.partial import float_flat
from shared.schemas import Mechanism, PrivacySpend, PrivacyUnit

ACCOUNTING = "RDP (Gaussian, sample rate 1)"
SENSITIVITY_FACTOR = 2.0
"""L2 sensitivity in units of S: two clipped updates differ by at most 2 S (replacement)."""
__all__ = ["ACCOUNTING", "ALPHAS", "SENSITIVITY_FACTOR", "composed_gaussian_epsilon",
           "gaussian_epsilon", "gaussian_release", "gaussian_spend"]  # fmt: skip


def gaussian_release(
    delta: Mapping[str, torch.Tensor],
    l2_clip: float,
    noise_multiplier: float,
    generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """Clip the update's global L2 norm to S, then add N(0, (sigma S)^2) to every component.

    Flat clipping over all tensors at once, as in DP-FedAvg (McMahan et al., ICLR 2018;
    Geyer et al. 2017): x <- x * min(1, S / ||x||_2), ||x||_2 over every component of
    every tensor, summed in float64. The noise is drawn from the injected generator.

    delta: name -> float tensor of any shape, finite values.
    Returns: name -> dense float32 CPU tensor of the same shape.
    """
    if not 0.0 < l2_clip < math.inf:
        raise ValueError(f"l2_clip must be a finite number > 0, got {l2_clip}")
    if not 0.0 < noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {noise_multiplier}")
    flats = {name: float_flat(t, name) for name, t in delta.items()}
    squares = sum(
        (float(torch.linalg.vector_norm(f, dtype=torch.float64)) ** 2 for f in flats.values()),
        0.0,
    )
    norm = math.sqrt(squares)
    scale = min(1.0, l2_clip / norm) if norm > 0.0 else 1.0
    std = noise_multiplier * l2_clip
    out: dict[str, torch.Tensor] = {}
    for name, flat in flats.items():
        noisy = torch.randn(flat.numel(), generator=generator, dtype=torch.float32).mul_(std)
        out[name] = noisy.add_(flat, alpha=scale).reshape(delta[name].shape)
    return out


def gaussian_epsilon(noise_multiplier: float, rounds: int, delta: float) -> float:
    """Epsilon at ``delta`` after ``rounds`` Gaussian releases of one node's update.

    Neighbouring relation: two updates that may differ arbitrarily, each clipped to L2
    norm S (the relation the SVT mechanism uses too), so the L2 sensitivity is 2 S and the
    noise sigma S is sigma / 2 sensitivities. Every round releases (sample rate 1), so
    rounds compose in Renyi DP (Mironov 2017); shared.privacy.rdp does the composition
    and the conversion to (epsilon, delta) (Balle et al. 2020).
    """
    if not 0.0 < noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {noise_multiplier}")
    if rounds < 0:
        raise ValueError(f"rounds must be >= 0, got {rounds}")
    return composed_gaussian_epsilon([noise_multiplier] * rounds, delta)


def composed_gaussian_epsilon(noise_multipliers: Sequence[float], delta: float) -> float:
    """Epsilon at ``delta`` of Gaussian releases with these sigmas, one entry per release.

    Same relation and method as ``gaussian_epsilon`` (shared.privacy.accounting composes).
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    for sigma in noise_multipliers:
        if not 0.0 < sigma < math.inf:
            raise ValueError(f"noise_multiplier must be a finite number > 0, got {sigma}")
    history = [
        (sigma / SENSITIVITY_FACTOR, 1.0, count)
        for sigma, count in Counter(noise_multipliers).items()
    ]
    return rdp_epsilon(history, delta)


def gaussian_spend(noise_multiplier: float, rounds: int, delta: float) -> PrivacySpend:
    """The (epsilon, delta) guarantee of ``rounds`` Gaussian releases (see gaussian_epsilon)."""
    return PrivacySpend(
        mechanism=Mechanism.GAUSSIAN,
        epsilon=gaussian_epsilon(noise_multiplier, rounds, delta),
        delta=delta,
        accounting=ACCOUNTING,
        unit=PrivacyUnit.UPDATE,
        parameters={
            "sigma": noise_multiplier,
            "noise_multiplier": noise_multiplier / SENSITIVITY_FACTOR,
            "sample_rate": 1.0,
            "steps": rounds,
            "sensitivity_factor": SENSITIVITY_FACTOR,
        },
    )
