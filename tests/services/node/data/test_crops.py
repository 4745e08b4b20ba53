"""Tests of the crop sampler and the batch path that feeds training."""

from __future__ import annotations

import threading

import numpy as np
import numpy.typing as npt
import pytest
import torch

from services.node.data.cases import Case
from services.node.data.crops import (
    WORKER_THREAD_PREFIX,
    Schedule,
    _crop_start,
    _window,
    augmented_crop,
    crop_batches,
    steps_per_epoch,
)
from shared.schemas import TrainingPlan


def batch_workers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_THREAD_PREFIX)]


def cube_case(case_id: str, size: int = 20, seed: int = 0) -> Case:
    """Random image; tumour is a 4-voxel cube at a seeded corner, in all three regions."""
    rng = np.random.default_rng(seed)
    image = rng.standard_normal((4, size, size, size), dtype=np.float32)
    label = np.zeros((3, size, size, size), dtype=np.float32)
    x, y, z = (int(v) for v in rng.integers(0, size - 4, size=3))
    label[:, x : x + 4, y : y + 4, z : z + 4] = 1.0
    return Case(case_id, image, label)


def extract_window(
    volume: npt.NDArray[np.float32], start: tuple[int, ...], size: tuple[int, ...]
) -> npt.NDArray[np.float32]:
    """Copy [C, *size] from `volume` [C, D, H, W] at `start`; parts outside it are 0."""
    out = np.zeros((volume.shape[0], *size), dtype=np.float32)
    src, dst, _ = _window(start, size, volume.shape[1:])
    out[dst] = volume[src]
    return out


def test_extract_window_pads_outside_volume_with_zeros() -> None:
    volume = np.arange(1, 1 + 2 * 4 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 4)
    out = extract_window(volume, (-2, 0, 1), (8, 4, 4))
    assert out.shape == (2, 8, 4, 4)
    assert np.array_equal(out[:, 2:6, :, :3], volume[:, :, :, 1:])
    assert not out[:, :2].any()
    assert not out[:, 6:].any()
    assert not out[..., 3].any()


def test_schedule_shuffles_each_epoch_and_respects_max_steps() -> None:
    plan = TrainingPlan(local_epochs=3, batch_size=2)
    schedule = Schedule.build(np.random.default_rng(0), 5, plan)
    assert len(schedule.steps) == 3 * 3
    for epoch in range(3):
        seen = [i for step in schedule.steps[epoch * 3 : epoch * 3 + 3] for i in step]
        assert sorted(seen) == [0, 1, 2, 3, 4]
    assert [len(step) for step in schedule.steps[:3]] == [2, 2, 1]
    assert steps_per_epoch(5, plan.model_copy(update={"max_steps": 2})) == 2
    again = Schedule.build(np.random.default_rng(0), 5, plan)
    assert again == schedule


def test_sample_generators_are_distinct_and_reproducible() -> None:
    schedule = Schedule(steps=((0, 1),), entropy=7)
    draws = {(s, k): schedule.sample_rng(s, k).random() for s in range(3) for k in range(2)}
    assert len(set(draws.values())) == 6
    assert schedule.sample_rng(2, 1).random() == draws[(2, 1)]


def test_foreground_crops_hit_the_tumour_about_half_the_time() -> None:
    case = cube_case("c", size=32)
    assert case.foreground.size == 4**3
    hits = 0
    for seed in range(400):
        image, label = augmented_crop(case, (8, 8, 8), np.random.default_rng(seed))
        assert image.shape == (4, 8, 8, 8)
        assert label.shape == (3, 8, 8, 8)
        assert image.flags.c_contiguous
        assert label.flags.c_contiguous
        hits += bool(label.any())
    # P(hit) = 0.5 (centred on tumour) + 0.5 * P(a uniform 8^3 crop meets the 4^3 cube),
    # which is about 0.5 + 0.5 * (11/25)^3 = 0.54; 400 draws give a s.d. of 0.025.
    assert 0.45 < hits / 400 < 0.66


def reference_crop(
    case: Case, size: tuple[int, int, int], rng: np.random.Generator
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    """The straightforward way, as train_local did before crops were written in place:
    copy the window, flip the copies, then scale and shift. Same draws in the same order."""
    start = _crop_start(rng, case.image.shape[1:], size, case.foreground)
    image = extract_window(case.image, start, size)
    label = extract_window(case.label, start, size)
    for axis in (1, 2, 3):
        if rng.random() < 0.5:
            image, label = np.flip(image, axis), np.flip(label, axis)
    scale = 1.0 + rng.uniform(-0.1, 0.1)
    shift = rng.uniform(-0.1, 0.1)
    return image * np.float32(scale) + np.float32(shift), label


@pytest.mark.parametrize(
    ("shape", "size"),
    [((20, 20, 20), (8, 8, 8)), ((8, 20, 6), (16, 8, 8)), ((6, 6, 6), (16, 16, 16))],
)
def test_in_place_crop_equals_the_straightforward_one(
    shape: tuple[int, int, int], size: tuple[int, int, int]
) -> None:
    rng = np.random.default_rng(5)
    image = rng.standard_normal((4, *shape), dtype=np.float32)
    label = (rng.random((3, *shape)) < 0.05).astype(np.float32)
    case = Case("c", image, label)
    for seed in range(200):  # covers every flip combination, padded and unpadded windows
        fast = augmented_crop(case, size, np.random.default_rng(seed))
        slow = reference_crop(case, size, np.random.default_rng(seed))
        np.testing.assert_allclose(fast[0], slow[0], rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(fast[1], slow[1])


def test_crop_larger_than_volume_is_centred_zero_padding() -> None:
    case = cube_case("c", size=8)
    image, _ = augmented_crop(case, (16, 8, 8), np.random.default_rng(0))
    # Padding rows are 0 before the intensity shift, so they all hold the same value.
    assert np.unique(image[:, :4]).size == 1
    assert np.unique(image[:, 12:]).size == 1
    assert np.unique(image[:, 4:12]).size > 1


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_batches_equal_inline_batches(workers: int) -> None:
    cases = [cube_case(f"c{i}", seed=i) for i in range(3)]
    plan = TrainingPlan(local_epochs=2, batch_size=2)
    schedule = Schedule.build(np.random.default_rng(3), len(cases), plan)
    inline = list(crop_batches(cases, schedule, (8, 8, 8), workers=0, pin_memory=False))
    ahead = list(crop_batches(cases, schedule, (8, 8, 8), workers=workers, pin_memory=False))
    assert len(inline) == len(ahead) == len(schedule.steps) == 4
    for (image_a, label_a), (image_b, label_b), step in zip(
        inline, ahead, schedule.steps, strict=True
    ):
        assert image_a.shape == (len(step), 4, 8, 8, 8)
        assert label_a.shape == (len(step), 3, 8, 8, 8)
        assert image_a.dtype == torch.float32
        assert torch.equal(image_a, image_b)
        assert torch.equal(label_a, label_b)
    assert batch_workers() == []


def test_closing_the_batches_early_stops_the_worker_threads() -> None:
    cases = [cube_case(f"c{i}", seed=i) for i in range(4)]
    schedule = Schedule.build(np.random.default_rng(0), 4, TrainingPlan(local_epochs=5))
    batches = crop_batches(cases, schedule, (8, 8, 8), workers=2, pin_memory=False)
    next(batches)
    assert batch_workers() != []
    batches.close()
    assert batch_workers() == []


def test_negative_workers_rejected() -> None:
    schedule = Schedule(steps=((0,),), entropy=0)
    with pytest.raises(ValueError, match="workers must be >= 0, got -1"):
        next(crop_batches([cube_case("c")], schedule, (8, 8, 8), workers=-1, pin_memory=False))
