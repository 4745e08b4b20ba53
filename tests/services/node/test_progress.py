"""Tests of the plain-text progress bar for local training."""

from __future__ import annotations

import io

import pytest

from services.node.progress import ProgressBar


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_line_shows_bar_steps_loss_and_rate() -> None:
    clock = Clock()
    bar = ProgressBar("round 3", io.StringIO(), clock=clock)
    clock.now = 2.0

    assert bar.line(6, 24, 0.43121) == (
        "round 3 [######..................] 6/24 loss 0.4312 3.0 steps/s"
    )


def test_progress_bar_off_a_terminal_logs_every_tenth_and_the_end() -> None:
    stream = io.StringIO()
    bar = ProgressBar("local", stream, clock=Clock())

    for step in range(1, 21):
        bar(step, 20, 0.5)

    lines = stream.getvalue().splitlines()
    assert [line.split()[2] for line in lines] == [f"{s}/20" for s in range(2, 21, 2)]
    assert "\r" not in stream.getvalue()


def test_progress_bar_on_a_terminal_redraws_in_place_and_ends_the_line() -> None:
    stream = Terminal()
    clock = Clock()
    bar = ProgressBar("local", stream, min_interval_s=1.0, clock=clock)

    for step in range(1, 5):
        clock.now = step * 0.4
        bar(step, 4, 0.25)

    # Drawn at 0.4 s, skipped at 0.8 and 1.2 s (< 1 s apart), then drawn as the last step.
    assert stream.getvalue().count("\r") == 2
    assert stream.getvalue().endswith("4/4 loss 0.2500 2.5 steps/s\n")


@pytest.mark.parametrize(("step", "total"), [(0, 3), (4, 3), (1, 0)])
def test_progress_bar_rejects_steps_out_of_range(step: int, total: int) -> None:
    bar = ProgressBar("local", io.StringIO())

    with pytest.raises(ValueError, match=f"got step {step} of {total}"):
        bar(step, total, 0.1)


def test_progress_bar_rejects_negative_interval() -> None:
    with pytest.raises(ValueError, match=r"min_interval_s must be >= 0, got -1"):
        ProgressBar("local", io.StringIO(), min_interval_s=-1.0)
