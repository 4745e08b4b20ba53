"""The heartbeat thread beats while its block runs, and stops with it."""

from __future__ import annotations

import threading
import time

import pytest

from services.node.heartbeat import heartbeat


def test_it_beats_during_the_block_and_never_after() -> None:
    beats: list[float] = []
    two = threading.Event()

    def beat() -> None:
        beats.append(time.monotonic())
        if len(beats) >= 2:
            two.set()

    with heartbeat(beat, interval_s=0.02):
        assert two.wait(5.0)
    after = len(beats)
    time.sleep(0.1)
    assert len(beats) == after
    assert not [t for t in threading.enumerate() if t.name == "fedseg-heartbeat"]


def test_the_block_s_exception_passes_through_and_the_thread_stops() -> None:
    with pytest.raises(ZeroDivisionError), heartbeat(lambda: None, interval_s=0.01):
        _ = 1 / 0
    assert not [t for t in threading.enumerate() if t.name == "fedseg-heartbeat"]
