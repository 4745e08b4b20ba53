"""DP-SGD steps: Poisson sampling, per-sample gradients on SegResNet, clipping, the noise."""

from __future__ import annotations

import math
import re

import pytest
import torch
from monai.losses.dice import DiceLoss

from shared.model import ModelConfig, build_model, initial_state
from shared.privacy.dpsgd import (
    CLIP_MARGIN,
    clip_and_sum,
    clip_factors,
    noisy_mean,
    per_sample_gradients,
    per_sample_gradients_and_losses,
    poisson_sample,
    set_flat_gradient_,
    trainable_parameters,
)

TINY = ModelConfig(init_filters=8)
DICE = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _segresnet() -> torch.nn.Module:
    model = build_model(TINY)
    model.load_state_dict(initial_state(TINY, 0))
    return model.train()


def _crops(count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = _gen(seed)
    images = torch.randn((count, 4, 16, 16, 16), generator=generator)
    labels = (torch.rand((count, 3, 16, 16, 16), generator=generator) < 0.3).float()
    return images, labels


def _autograd_one_by_one(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference: one forward and one backward per sample, flattened in parameter order."""
    rows, losses = [], []
    for i in range(images.shape[0]):
        model.zero_grad(set_to_none=True)
        loss = DICE(model(images[i : i + 1]), labels[i : i + 1])
        loss.backward()
        grads = [p.grad for p in trainable_parameters(model).values()]
        rows.append(torch.cat([g.reshape(-1) for g in grads if g is not None]))
        losses.append(loss.detach())
    model.zero_grad(set_to_none=True)
    return torch.stack(rows), torch.stack(losses)


class _Linear(torch.nn.Module):
    """y = w . x with a frozen bias: its loss y has gradient x, the frozen bias none."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2, width // 2))
        self.b = torch.nn.Parameter(torch.zeros(1), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.reshape(x.shape[0], 2, -1) * self.w).sum(dim=(1, 2)) + self.b


def _linear_loss(output: torch.Tensor, _target: torch.Tensor) -> torch.Tensor:
    return output.sum()


def test_per_sample_gradients_segresnet_match_one_backward_per_sample() -> None:
    """vmap over SegResNet (in-place residual add, GroupNorm) equals per-sample autograd.

    Tolerance: float32 accumulation-order noise, atol 1e-6 on gradients of magnitude up to
    ~4e-2 (seen: at most 2e-8 apart) and rtol 1e-5 on the losses.
    """
    model = _segresnet()
    images, labels = _crops(3, seed=0)
    expected, expected_losses = _autograd_one_by_one(model, images, labels)
    gradients, losses = per_sample_gradients_and_losses(model, DICE, images, labels)
    size = sum(p.numel() for p in model.parameters())
    assert gradients.shape == (3, size)
    assert gradients.dtype == torch.float32
    assert losses.shape == (3,)
    torch.testing.assert_close(gradients, expected, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(losses, expected_losses, atol=0.0, rtol=1e-5)
    assert all(p.grad is None for p in model.parameters())  # the model's .grad is not touched


def test_per_sample_gradients_chunked_equal_whole_batch() -> None:
    """chunk=2 over 3 samples gives the same rows (float32 tolerance as above)."""
    model = _segresnet()
    images, labels = _crops(3, seed=1)
    whole = per_sample_gradients(model, DICE, images, labels)
    chunked = per_sample_gradients(model, DICE, images, labels, chunk=2)
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0.0)


def test_per_sample_gradients_layout_follows_trainable_parameters() -> None:
    model = _Linear(6)
    inputs = torch.arange(12.0).reshape(2, 6)
    gradients = per_sample_gradients(model, _linear_loss, inputs, torch.zeros(2))
    assert list(trainable_parameters(model)) == ["w"]  # the frozen bias is left out
    assert torch.equal(gradients, inputs)


def test_per_sample_gradients_empty_batch_and_mismatch() -> None:
    model = _Linear(4)
    empty = per_sample_gradients(model, _linear_loss, torch.zeros(0, 4), torch.zeros(0))
    assert empty.shape == (0, 4)
    with pytest.raises(
        ValueError,
        match=_exact("inputs and targets must hold the same number of samples, got 2 and 3"),
    ):
        per_sample_gradients(model, _linear_loss, torch.zeros(2, 4), torch.zeros(3))
    with pytest.raises(ValueError, match=_exact("chunk must be >= 1 or None, got 0")):
        per_sample_gradients(model, _linear_loss, torch.zeros(2, 4), torch.zeros(2), chunk=0)


def test_clip_and_sum_clips_rows_above_c_and_leaves_the_others() -> None:
    generator = _gen(0)
    directions = torch.randn((8, 10_000), generator=generator)
    directions /= torch.linalg.vector_norm(directions, dim=1, keepdim=True)
    wanted = torch.tensor([0.0, 0.1, 0.5, 0.999, 1.0, 1.001, 3.0, 1e4])
    rows = directions * wanted[:, None]
    factors = clip_factors(rows, l2_clip=1.0)
    clipped = rows * factors.float()[:, None]
    norms = torch.linalg.vector_norm(clipped.double(), dim=1)
    assert factors.dtype == torch.float64
    assert bool((norms <= 1.0).all())
    assert torch.equal(clipped[:5], rows[:5])  # norm <= C: untouched, bit for bit
    assert torch.equal(factors[:5], torch.ones(5, dtype=torch.float64))
    # Above C: scaled to C (1 - CLIP_MARGIN), float32 rounding aside (2^-24 relative).
    torch.testing.assert_close(
        norms[5:], torch.full((3,), 1.0 - CLIP_MARGIN, dtype=torch.float64), atol=0.0, rtol=1e-7
    )
    torch.testing.assert_close(clip_and_sum(rows, 1.0), clipped.sum(dim=0), atol=1e-6, rtol=0.0)


def test_clip_and_sum_one_huge_row_moves_the_sum_by_at_most_c() -> None:
    rows = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.5]])
    with_huge = clip_and_sum(torch.cat([rows, torch.tensor([[1e6, -1e6, 1e6]])]), 2.0)
    change = torch.linalg.vector_norm((with_huge - clip_and_sum(rows, 2.0)).double())
    assert float(change) <= 2.0
    torch.testing.assert_close(clip_and_sum(rows, 2.0), torch.tensor([1.2, 1.6, 0.5]))


def test_clip_and_sum_empty_is_zero_and_bad_input_raises() -> None:
    assert torch.equal(clip_and_sum(torch.zeros(0, 5), 1.0), torch.zeros(5))
    with pytest.raises(ValueError, match=_exact("l2_clip must be a finite number > 0, got 0.0")):
        clip_factors(torch.zeros(1, 5), 0.0)
    with pytest.raises(ValueError, match=_exact("per_sample must be [B, P], got [5]")):
        clip_factors(torch.zeros(5), 1.0)
    with pytest.raises(FloatingPointError, match="a per-sample gradient is not finite"):
        clip_and_sum(torch.tensor([[1.0, math.nan]]), 1.0)


def test_noisy_mean_std_is_sigma_c_over_normaliser() -> None:
    """400k components: sample std within 1% of sigma C / normaliser (the std's standard
    error is 1 / sqrt(2 n) = 0.11%, so 1% is 9 standard errors); mean within 5 of its."""
    summed = torch.zeros(400_000)
    out = noisy_mean(summed, noise_multiplier=1.3, l2_clip=0.7, normaliser=4, generator=_gen(0))
    expected = 1.3 * 0.7 / 4
    assert out.shape == (400_000,)
    assert out.dtype == torch.float32
    assert float(out.double().std()) == pytest.approx(expected, rel=0.01)
    assert abs(float(out.double().mean())) < 5 * expected / math.sqrt(400_000)


def test_noisy_mean_adds_the_sum_over_the_public_normaliser() -> None:
    summed = torch.linspace(-3.0, 3.0, 1000)
    noisy = noisy_mean(summed, 0.5, 2.0, 3, _gen(7))
    noise_only = noisy_mean(torch.zeros(1000), 0.5, 2.0, 3, _gen(7))
    torch.testing.assert_close(noisy - noise_only, summed / 3, atol=1e-6, rtol=0.0)
    assert not torch.equal(noisy, noisy_mean(summed, 0.5, 2.0, 3, _gen(8)))


def test_noisy_mean_rejects_bad_settings() -> None:
    flat = torch.zeros(3)
    with pytest.raises(
        ValueError, match=_exact("noise_multiplier must be a finite number > 0, got 0.0")
    ):
        noisy_mean(flat, 0.0, 1.0, 1, _gen(0))
    with pytest.raises(ValueError, match=_exact("l2_clip must be a finite number > 0, got inf")):
        noisy_mean(flat, 1.0, math.inf, 1, _gen(0))
    with pytest.raises(ValueError, match=_exact("normaliser must be >= 1, got 0")):
        noisy_mean(flat, 1.0, 1.0, 0, _gen(0))
    with pytest.raises(ValueError, match=_exact("summed must be a flat gradient [P], got [1, 3]")):
        noisy_mean(flat[None], 1.0, 1.0, 1, _gen(0))


def test_poisson_sample_inclusion_rate_is_q() -> None:
    """4000 steps over 20 patients at q = 0.25: every patient's count is Binomial(4000,
    0.25), sd 27.4; each lies within 5 sd of 1000 (a false failure: ~1e-5 for all 20)."""
    generator = _gen(0)
    counts = torch.zeros(20, dtype=torch.int64)
    sizes = []
    for _ in range(4000):
        members = poisson_sample(20, 0.25, generator)
        counts[members] += 1
        sizes.append(members.numel())
    sd = math.sqrt(4000 * 0.25 * 0.75)
    assert bool(((counts - 1000).abs() <= 5 * sd).all())
    assert 0 in sizes  # the batch size is random, empty batches included (P = 0.75^20 = 0.3%)
    assert max(sizes) > 10


def test_poisson_sample_sorted_unique_int64() -> None:
    members = poisson_sample(1000, 0.3, _gen(3))
    assert members.dtype == torch.int64
    assert members.device.type == "cpu"
    assert torch.equal(members, torch.unique(members))  # unique() sorts
    assert int(members.min()) >= 0
    assert int(members.max()) < 1000
    assert poisson_sample(0, 0.5, _gen(0)).shape == (0,)
    assert torch.equal(poisson_sample(7, 1.0, _gen(0)), torch.arange(7))


def test_poisson_sample_same_seed_same_sample() -> None:
    first = poisson_sample(500, 0.1, _gen(11))
    assert torch.equal(first, poisson_sample(500, 0.1, _gen(11)))
    assert not torch.equal(first, poisson_sample(500, 0.1, _gen(12)))


def test_poisson_sample_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match=_exact("rate must be in (0, 1], got 0.0")):
        poisson_sample(5, 0.0, _gen(0))
    with pytest.raises(ValueError, match=_exact("rate must be in (0, 1], got 1.5")):
        poisson_sample(5, 1.5, _gen(0))
    with pytest.raises(ValueError, match=_exact("n must be >= 0, got -1")):
        poisson_sample(-1, 0.5, _gen(0))


def test_set_flat_gradient_writes_every_parameter_in_layout_order() -> None:
    first, second = torch.nn.Linear(3, 2), torch.nn.Linear(2, 1)
    model = torch.nn.Sequential(first, second)
    flat = torch.arange(11.0)
    set_flat_gradient_(model, flat)
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None for g in grads)
    assert torch.equal(torch.cat([g.reshape(-1) for g in grads if g is not None]), flat)
    flat += 1.0  # the gradients are copies
    assert second.bias.grad is not None
    assert torch.equal(second.bias.grad, torch.tensor([10.0]))
    set_flat_gradient_(model, torch.zeros(11))  # existing .grad is overwritten in place
    assert first.weight.grad is not None
    assert torch.equal(first.weight.grad, torch.zeros(2, 3))
    with pytest.raises(
        ValueError, match=_exact("flat must hold the model's 11 trainable components, got [10]")
    ):
        set_flat_gradient_(model, torch.zeros(10))
