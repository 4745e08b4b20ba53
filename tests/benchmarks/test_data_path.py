"""The data-path benchmark runs end to end on small volumes and says what it measured."""

from __future__ import annotations

import re

import numpy as np
import pytest

from benchmarks.data_path import brats_sized_cases, main, monai_reference


def test_small_run_prints_each_setting(capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["--batches", "3", "--cases", "2", "--shape", "24", "24", "20", "--crop", "16"]) == 0
    )

    out = capsys.readouterr().out
    assert out.startswith("2 cases (24, 24, 20), 3 batches of one (16, 16, 16) crop each\n")
    assert re.search(r"MONAI reference transforms, in process: +[0-9.]+ batches/s", out)
    for workers in (0, 2):
        assert re.search(rf"memory-mapped cases, {workers} worker\(s\): +[0-9.]+ batches/s", out)
    for workers in (1, 2):
        assert re.search(rf"DataLoader, {workers} worker process\(es\): +[0-9.]+ batches/s", out)
    for workers in (0, 1, 2):
        assert re.search(
            rf"fedseg crop_batches, {workers} worker\(s\): +[0-9.]+ batches/s = [0-9.]+x the "
            r"reference; first batch after [0-9.]+ s",
            out,
        )


def test_cases_hold_a_ball_of_tumour_inside_the_volume() -> None:
    (case,) = brats_sized_cases(1, (40, 40, 32))
    assert case.image.shape == (4, 40, 40, 32)
    assert np.array_equal(case.label[0], case.label[2])
    assert 0 < case.foreground.size < 40 * 40 * 32 // 4


def test_monai_reference_crops_to_the_requested_size() -> None:
    sample = monai_reference(brats_sized_cases(2, (24, 24, 24)), (16, 16, 16))
    (out,) = sample(0)  # type: ignore[misc]
    assert tuple(out["image"].shape) == (4, 16, 16, 16)
    assert tuple(out["label"].shape) == (1, 16, 16, 16)


def test_bad_arguments_exit_2() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--batches", "0"])
    assert exit_info.value.code == 2
