"""Tests of patient-level DP-SGD local training on tiny synthetic volumes."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from monai.losses.dice import DiceLoss

from services.node.data.cases import Case
from services.node.data.crops import augmented_crop
from services.node.dpsgd_training import DpSgdSettings, _case_key, train_local_dpsgd
from services.node.training import TrainResult
from shared.model import ModelConfig, build_model, initial_state
from shared.privacy.dpsgd import poisson_sample
from shared.schemas import TrainingPlan
from tests.services.node.test_training import TINY, sphere_case, tiny_model

CPU = torch.device("cpu")
PLAN = TrainingPlan(max_steps=3, learning_rate=1e-2, batch_size=2, crop_size=(16, 16, 16))
SETTINGS = DpSgdSettings(sample_rate=0.5, noise_multiplier=1.0, l2_clip=1.0, steps=3, normaliser=2)


def _exact(message: str) -> str:
    return "^" + re.escape(message) + "$"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _cases(count: int = 3, size: int = 16) -> list[Case]:
    return [sphere_case(f"c{i}", size, seed=i) for i in range(count)]


def _train(
    model: torch.nn.Module,
    settings: DpSgdSettings = SETTINGS,
    *,
    sampling: int = 0,
    noise: int = 0,
    progress: list[tuple[int, int, float]] | None = None,
    crops: int | None = 11,
) -> TrainResult:
    calls = progress if progress is not None else []
    return train_local_dpsgd(
        model,
        _cases(),
        PLAN,
        settings,
        CPU,
        sampling=_gen(sampling),
        noise=_gen(noise),
        progress=lambda s, t, loss: calls.append((s, t, loss)),
        crop_entropy=crops,
    )


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_train_local_dpsgd_changes_weights_and_counts_sampled_patients() -> None:
    model = tiny_model()
    calls: list[tuple[int, int, float]] = []
    result = _train(model, progress=calls)
    replay = _gen(0)  # the sampling generator draws only the Poisson samples
    sampled = [poisson_sample(3, 0.5, replay).tolist() for _ in range(3)]
    assert not _equal(_state(model), initial_state(TINY, 0))
    assert isinstance(result, TrainResult)
    assert result.steps == 3
    assert result.num_samples == len({i for step in sampled for i in step})
    assert [(s, t) for s, t, _ in calls] == [(1, 3), (2, 3), (3, 3)]
    losses = [loss for (_, _, loss), step in zip(calls, sampled, strict=True) if step]
    assert result.mean_loss == pytest.approx(sum(losses) / len(losses), rel=1e-12)
    assert all(0.0 < loss < 1.0 for loss in losses)
    assert result.seconds > 0


def test_train_local_dpsgd_reproducible_with_the_same_generators() -> None:
    first, second, other_noise, other_sample, other_crops, secret = (tiny_model() for _ in range(6))
    a, b = _train(first), _train(second)
    _train(other_noise, noise=1)
    _train(other_sample, sampling=5)
    _train(other_crops, crops=12)
    _train(secret, crops=None)  # the node's default: fresh secret crop entropy
    assert _equal(_state(first), _state(second))
    assert (a.num_samples, a.mean_loss) == (b.num_samples, b.mean_loss)
    for other in (other_noise, other_sample, other_crops, secret):
        assert not _equal(_state(first), _state(other))


def test_a_patients_crops_do_not_depend_on_the_other_patients() -> None:
    """Removing a patient leaves every other patient's crop seed as it was (keyed by case id)."""
    cases = _cases(4)
    keys = [_case_key(c) for c in cases]
    assert [_case_key(c) for c in cases[1:]] == keys[1:]
    assert len(set(keys)) == 4


def test_train_local_dpsgd_leaves_global_rng_untouched() -> None:
    """With dropout, which draws from torch's global generator under vmap."""
    config = ModelConfig(init_filters=8, dropout_prob=0.2)
    model = build_model(config)
    model.load_state_dict(initial_state(config, 0))
    torch_state = torch.get_rng_state()
    np.random.seed(1234)  # the legacy global generator must stay untouched
    result = _train(model, DpSgdSettings(1.0, 1.0, 1.0, steps=2, normaliser=2))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert np.random.random() == np.random.RandomState(1234).random()
    assert result.num_samples == 3


def test_train_local_dpsgd_empty_sample_still_takes_a_noise_step() -> None:
    model = tiny_model()
    calls: list[tuple[int, int, float]] = []
    result = _train(model, DpSgdSettings(1e-12, 1.0, 1.0, steps=2, normaliser=2), progress=calls)
    assert (result.steps, result.num_samples) == (2, 0)
    assert math.isnan(result.mean_loss)
    assert [(s, t) for s, t, _ in calls] == [(1, 2), (2, 2)]
    assert all(math.isnan(loss) for _, _, loss in calls)
    assert not _equal(_state(model), initial_state(TINY, 0))


def test_train_local_dpsgd_gradient_is_the_clipped_sum_over_the_normaliser() -> None:
    """q = 1, noise std 1e-9 C: step 1's gradient is sum_i clip_C(g_i) / normaliser, g_i the
    Dice gradient of patient i's crop (seeded by the crop entropy, step 0 and patient i's
    case id). C = 1e-3 is below every g_i's norm, so every patient is clipped. Tolerance:
    float32 sums, atol 1e-8 on components of at most C / 2 = 5e-4."""
    cases = _cases()
    model = tiny_model()
    captured: list[torch.Tensor] = []

    def capture(step: int, _total: int, _loss: float) -> None:
        if step == 1:  # .grad still holds the gradient Adam was handed
            grads = [p.grad for p in model.parameters()]
            captured.append(torch.cat([g.reshape(-1) for g in grads if g is not None]))

    settings = DpSgdSettings(1.0, 1e-9, 1e-3, steps=1, normaliser=2)
    train_local_dpsgd(
        model, cases, PLAN, settings, CPU, sampling=_gen(0), noise=_gen(0), progress=capture,
        crop_entropy=7,
    )  # fmt: skip
    reference = tiny_model()
    loss_fn = DiceLoss(sigmoid=True, smooth_nr=0.0, smooth_dr=1e-5, squared_pred=True)
    expected = torch.zeros_like(captured[0])
    for case in cases:
        rng = np.random.default_rng(np.random.SeedSequence((7, 0, _case_key(case))))
        image, label = augmented_crop(case, (16, 16, 16), rng)
        reference.zero_grad(set_to_none=True)
        loss = loss_fn(reference(torch.from_numpy(image)[None]), torch.from_numpy(label)[None])
        loss.backward()
        grads = [p.grad for p in reference.parameters()]
        grad = torch.cat([g.reshape(-1) for g in grads if g is not None])
        norm = float(torch.linalg.vector_norm(grad.double()))
        assert norm > 1e-3
        expected += grad * (1e-3 / norm)
    torch.testing.assert_close(captured[0], expected / 2, atol=1e-8, rtol=0.0)


def test_train_local_dpsgd_rejects_no_cases() -> None:
    with pytest.raises(
        ValueError, match=_exact("train_local_dpsgd needs at least one case, got none")
    ):
        train_local_dpsgd(tiny_model(), [], PLAN, SETTINGS, CPU, sampling=_gen(0), noise=_gen(0))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"sample_rate": 0.0}, "sample_rate must be in (0, 1], got 0.0"),
        ({"sample_rate": 1.5}, "sample_rate must be in (0, 1], got 1.5"),
        ({"noise_multiplier": 0.0}, "noise_multiplier must be a finite number > 0, got 0.0"),
        ({"noise_multiplier": math.inf}, "noise_multiplier must be a finite number > 0, got inf"),
        ({"l2_clip": -1.0}, "l2_clip must be a finite number > 0, got -1.0"),
        ({"steps": 0}, "steps must be >= 1, got 0"),
        ({"normaliser": 0}, "normaliser must be >= 1, got 0"),
    ],
)
def test_dpsgd_settings_rejects_bad_values(fields: dict[str, float], message: str) -> None:
    values: dict[str, float] = {
        "sample_rate": 0.5,
        "noise_multiplier": 1.0,
        "l2_clip": 1.0,
        "steps": 1,
        "normaliser": 1,
    }
    values.update(fields)
    with pytest.raises(ValueError, match=_exact(message)):
        DpSgdSettings(**values)  # type: ignore[arg-type]
