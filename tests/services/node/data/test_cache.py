"""The case cache: written once, memory-mapped after, redone when a scan changes."""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from services.node.data.cache import META, CaseCache
from services.node.data.layout import find_local_cases, load_local_split, load_source
from services.node.data.synthetic_sites import write_site
from services.node.evaluation import evaluate
from services.node.training import train_local
from shared.model import ModelConfig, build_model, initial_state
from shared.schemas import TrainingPlan

TINY = ModelConfig(init_filters=8)
CPU = torch.device("cpu")


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    write_site(root, 1, 3, (24, 24, 24), seed=4)
    return root


def test_first_load_writes_then_later_loads_map_the_same_case(site: Path, tmp_path: Path) -> None:
    cache = CaseCache(tmp_path / "cache")
    source = find_local_cases(site)[0]
    direct = load_source(source)

    first = cache.load(source)
    entry = cache.entry(source)
    assert sorted(p.name for p in entry.iterdir()) == [META, "image.npy", "label.npy"]
    assert stat.S_IMODE(cache.root.stat().st_mode) == 0o700  # patient images
    for path in entry.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    again = cache.load(source)

    for case in (first, again):
        assert isinstance(case.image, np.memmap)
        assert not case.image.flags.writeable
        assert case.label.dtype == np.uint8
        assert case.case_id == direct.case_id
        assert case.spacing == direct.spacing
        np.testing.assert_array_equal(case.image, direct.image)
        np.testing.assert_array_equal(case.label, direct.label)


def test_training_and_validation_from_the_cache_equal_in_memory(site: Path, tmp_path: Path) -> None:
    cache = CaseCache(tmp_path / "cache")
    cached_train, cached_val = load_local_split(site, 0.34, 0, load=cache.load)
    memory_train, memory_val = load_local_split(site, 0.34, 0)
    plan = TrainingPlan(local_epochs=2, learning_rate=1e-2, crop_size=(16, 16, 16))
    models = []
    for cases in (cached_train, memory_train):
        model = build_model(TINY)
        model.load_state_dict(initial_state(TINY, 0))
        train_local(model, cases, plan, CPU, workers=1)
        models.append(model)
    a, b = (m.state_dict() for m in models)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert evaluate(models[0], cached_val, (16, 16, 16), CPU) == evaluate(
        models[0], memory_val, (16, 16, 16), CPU
    )


def test_a_changed_scan_gets_a_new_entry_and_prune_removes_the_old(
    site: Path, tmp_path: Path
) -> None:
    cache = CaseCache(tmp_path / "cache")
    sources = find_local_cases(site)
    for source in sources:
        cache.load(source)
    old = cache.entry(sources[0])
    flair = sources[0].modalities[3]  # type: ignore[union-attr]
    os.utime(flair, ns=(flair.stat().st_atime_ns, flair.stat().st_mtime_ns + 10**9))
    changed = find_local_cases(site)
    assert cache.entry(changed[0]) != old
    cache.load(changed[0])

    removed = cache.prune(cache.entry(source) for source in changed)

    assert removed == [old]
    assert sorted(p.name for p in cache.root.iterdir()) == sorted(
        cache.entry(source).name for source in changed
    )


def test_a_scan_rewritten_in_place_with_its_old_size_and_time_gets_a_new_entry(
    site: Path, tmp_path: Path
) -> None:
    cache = CaseCache(tmp_path / "cache")
    source = find_local_cases(site)[0]
    cache.load(source)
    old = cache.entry(source)
    label_file = source.label
    assert label_file is not None
    times = label_file.stat()
    time.sleep(0.05)  # past the file system's timestamp granularity
    label_file.write_bytes(label_file.read_bytes())  # rewritten in place, same size
    os.utime(label_file, ns=(times.st_atime_ns, times.st_mtime_ns))  # as `cp -p` would
    assert (label_file.stat().st_size, label_file.stat().st_mtime_ns) == (
        times.st_size,
        times.st_mtime_ns,
    )

    rewritten = find_local_cases(site)[0]

    assert cache.entry(rewritten) != old
    restarted = CaseCache(cache.root)
    restarted.load(rewritten)
    assert restarted.prune() == [old]


def test_an_interrupted_write_is_redone_and_its_leftovers_pruned(
    site: Path, tmp_path: Path
) -> None:
    cache = CaseCache(tmp_path / "cache")
    source = find_local_cases(site)[0]
    entry = cache.entry(source)
    entry.mkdir(parents=True)  # killed before the rename: no META, so not an entry
    (entry / "image.npy").write_bytes(b"partial")
    leftover = cache.root / ".tmp-crashed"
    leftover.mkdir()

    case = cache.load(source)

    np.testing.assert_array_equal(case.image, load_source(source).image)
    assert cache.prune([entry]) == [leftover]


@pytest.mark.parametrize(
    "damage", ["object array", "float label", "truncated", "wrong shape", "bad meta"]
)
def test_a_damaged_entry_is_written_again(
    site: Path, tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture
) -> None:
    cache = CaseCache(tmp_path / "cache")
    source = find_local_cases(site)[0]
    cache.load(source)
    entry = cache.entry(source)
    if damage == "object array":
        np.save(entry / "label.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif damage == "float label":
        np.save(entry / "label.npy", np.load(entry / "label.npy").astype(np.float64))
    elif damage == "truncated":
        data = (entry / "image.npy").read_bytes()
        (entry / "image.npy").write_bytes(data[: len(data) // 2])
    elif damage == "wrong shape":
        np.save(entry / "label.npy", np.zeros((3, 2, 2, 2), np.uint8))
    else:
        (entry / META).write_text("{}")

    case = cache.load(source)

    np.testing.assert_array_equal(case.image, load_source(source).image)
    np.testing.assert_array_equal(case.label, load_source(source).label)
    assert f"case cache: {entry} is unreadable" in caplog.text
