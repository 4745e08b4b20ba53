"""The steps of patient-level DP-SGD as pure functions: sample, per-sample grads, clip, noise."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.func import functional_call, grad_and_value, vmap

__all__ = [
    "CLIP_MARGIN",
    "LossFn",
    "clip_and_sum",
    "clip_factors",
    "noisy_mean",
    "per_sample_gradients",
    "per_sample_gradients_and_losses",
    "poisson_sample",
    "set_flat_gradient_",
    "trainable_parameters",
]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""loss(logits [1, ...], target [1, ...]) -> scalar: the loss of one sample."""

CLIP_MARGIN = 2.0**-22
"""Relative margin below C that clipped gradients are scaled to: rounding the scaled float32
components moves the norm by at most 2^-24 relative, so a clipped norm never exceeds C."""


def poisson_sample(n: int, rate: float, generator: torch.Generator) -> torch.Tensor:
    """The patients of one step: each of ``n`` included independently with probability q.

    Poisson sampling as in Abadi et al., "Deep Learning with Differential Privacy" (CCS
    2016), the sampling the sampled Gaussian mechanism's RDP bound assumes (Mironov, Talwar
    and Zhang, "Renyi Differential Privacy of the Sampled Gaussian Mechanism", 2019). The
    batch size is random and private. Amplification holds only if the draw is unpredictable
    to the adversary: ``generator`` must be secret (seeded from the OS), never the run's
    public seed. One float64 uniform per patient, drawn on the generator's device.

    Returns: int64 [k] CPU, the sorted indices of the included patients (k may be 0).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 < rate <= 1.0:
        raise ValueError(f"rate must be in (0, 1], got {rate}")
    uniforms = torch.rand(n, generator=generator, device=generator.device, dtype=torch.float64)
    return torch.nonzero(uniforms < rate).reshape(-1).cpu()


def trainable_parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    """name -> parameter for every parameter that requires grad, in registration order.

    This order is the order of the P components of every flat gradient in this module.
    """
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def per_sample_gradients_and_losses(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gradients of every sample's own loss, and those losses, vectorised.

    ``torch.func.vmap(grad_and_value(loss))`` over the batch with ``functional_call``
    (the per-example gradients of Abadi et al. 2016, computed in one vectorised pass
    instead of one backward per sample). Each sample is fed to the model alone, as
    [1, *sample], so layers that normalise within a sample (GroupNorm, InstanceNorm) are
    exact; layers that couple samples (BatchNorm) are not supported. This works on MONAI's
    SegResNet, whose residual ``x += identity`` defeats Opacus's hook-based GradSampleModule:
    under vmap the in-place add acts on per-sample tensors. Random layers (dropout) draw
    different masks per sample from torch's global generator (``randomness="different"``).
    The gradient is taken in the parameters' dtype, float32 for fedseg: autocast is not
    used, so the clipping norms are computed at full precision.

    inputs: [B, *sample]; targets: [B, *target], on the model's device.
    chunk: at most this many samples are vmapped at once (bounds the activation memory and
        the per-parameter per-sample gradients besides the output); None: all B at once.
    Returns: gradients float32 [B, P] (P: the numel of trainable_parameters, in that order)
        and losses float32 [B], on the inputs' device.
    """
    if inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets must hold the same number of samples, got "
            f"{inputs.shape[0]} and {targets.shape[0]}"
        )
    if chunk is not None and chunk < 1:
        raise ValueError(f"chunk must be >= 1 or None, got {chunk}")
    trainable = {name: p.detach() for name, p in trainable_parameters(model).items()}
    frozen = {name: p.detach() for name, p in model.named_parameters() if name not in trainable}
    buffers = {name: b.detach() for name, b in model.named_buffers()}
    count = inputs.shape[0]
    size = sum(p.numel() for p in trainable.values())
    gradients = torch.empty((count, size), dtype=torch.float32, device=inputs.device)
    losses = torch.empty(count, dtype=torch.float32, device=inputs.device)

    def sample_loss(
        params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor
    ) -> torch.Tensor:
        output = functional_call(model, (params, frozen, buffers), (x.unsqueeze(0),))
        return loss_fn(output.float(), y.unsqueeze(0))

    step = vmap(grad_and_value(sample_loss), in_dims=(None, 0, 0), randomness="different")
    width = count if chunk is None else chunk
    for start in range(0, count, max(width, 1)):
        stop = min(start + width, count)
        grads, values = step(trainable, inputs[start:stop], targets[start:stop])
        torch.cat(
            [g.reshape(stop - start, -1).float() for g in grads.values()],
            dim=1,
            out=gradients[start:stop],
        )
        losses[start:stop] = values.float()
    return gradients, losses


def per_sample_gradients(
    model: torch.nn.Module,
    loss_fn: LossFn,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    *,
    chunk: int | None = None,
) -> torch.Tensor:
    """Flat per-sample gradients float32 [B, P]: per_sample_gradients_and_losses without losses."""
    return per_sample_gradients_and_losses(model, loss_fn, inputs, targets, chunk=chunk)[0]


def clip_factors(per_sample: torch.Tensor, l2_clip: float) -> torch.Tensor:
    """Scale factors float64 [B] that clip each row of ``per_sample`` [B, P] to L2 norm C.

    Flat clipping over all parameters at once (Abadi et al. 2016, Alg. 1): factor 1 when
    ||g||_2 <= C, else C / ||g||_2 * (1 - CLIP_MARGIN); norms in float64. A row with a
    non-finite norm raises FloatingPointError: it would poison the sum.
    """
    if not 0.0 < l2_clip < math.inf:
        raise ValueError(f"l2_clip must be a finite number > 0, got {l2_clip}")
    if per_sample.ndim != 2:
        raise ValueError(f"per_sample must be [B, P], got {list(per_sample.shape)}")
    norms = torch.linalg.vector_norm(per_sample, dim=1, dtype=torch.float64)
    if not bool(torch.isfinite(norms).all()):
        raise FloatingPointError("a per-sample gradient is not finite; lower the learning rate")
    clipped = l2_clip / norms.clamp(min=torch.finfo(torch.float64).tiny) * (1.0 - CLIP_MARGIN)
    return torch.where(norms > l2_clip, clipped, torch.ones_like(norms))


def clip_and_sum(per_sample: torch.Tensor, l2_clip: float) -> torch.Tensor:
    """Sum float32 [P] of the rows of ``per_sample`` [B, P], each clipped to L2 norm C first.

    Removing or adding one row moves the sum by at most C in L2 norm: the sensitivity the
    Gaussian noise of ``noisy_mean`` is calibrated to (Abadi et al. 2016, Alg. 1). B = 0
    gives zeros.
    """
    factors = clip_factors(per_sample, l2_clip).to(per_sample.dtype)
    return factors @ per_sample


def noisy_mean(
    summed: torch.Tensor,
    noise_multiplier: float,
    l2_clip: float,
    normaliser: int,
    generator: torch.Generator,
) -> torch.Tensor:
    """(sum + N(0, sigma^2 C^2 I)) / normaliser: the private gradient of one step, float32 [P].

    The Gaussian mechanism on the clipped sum (Abadi et al. 2016, Alg. 1; with Poisson
    sampling, the sampled Gaussian mechanism of Mironov, Talwar and Zhang 2019). The
    normaliser must be public (the plan's batch size, never the private sampled count or
    q * N, N being private too); dividing by it is post-processing. The noise comes from the
    secret ``generator``, which must be on the device of ``summed`` [P]; torch's float32
    Gaussian sampler is used, as in Opacus (not an exact sampler; Mironov 2012).
    """
    if not 0.0 < noise_multiplier < math.inf:
        raise ValueError(f"noise_multiplier must be a finite number > 0, got {noise_multiplier}")
    if not 0.0 < l2_clip < math.inf:
        raise ValueError(f"l2_clip must be a finite number > 0, got {l2_clip}")
    if normaliser < 1:
        raise ValueError(f"normaliser must be >= 1, got {normaliser}")
    if summed.ndim != 1:
        raise ValueError(f"summed must be a flat gradient [P], got {list(summed.shape)}")
    noise = torch.randn(
        summed.shape, generator=generator, device=summed.device, dtype=torch.float32
    )
    return noise.mul_(noise_multiplier * l2_clip).add_(summed).div_(normaliser)


def set_flat_gradient_(model: torch.nn.Module, flat: torch.Tensor) -> None:
    """Write ``flat`` [P] into ``.grad`` of every trainable parameter, in place.

    Components in trainable_parameters order, as per_sample_gradients lays them out; each
    ``.grad`` gets a copy in its parameter's dtype and device (no aliasing of ``flat``).
    """
    params = list(trainable_parameters(model).values())
    size = sum(p.numel() for p in params)
    if flat.shape != (size,):
        raise ValueError(
            f"flat must hold the model's {size} trainable components, got {list(flat.shape)}"
        )
    start = 0
    for p in params:
        part = flat[start : start + p.numel()].view(p.shape)
        if p.grad is None:
            p.grad = part.to(device=p.device, dtype=p.dtype, copy=True)
        else:
            p.grad.copy_(part)
        start += p.numel()
