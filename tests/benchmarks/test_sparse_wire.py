"""The sparse-wire benchmark: bytes are deterministic, so its target is checked here too."""

from __future__ import annotations

import pytest

from benchmarks import sparse_wire


def test_a_one_percent_update_costs_its_values_and_a_small_index(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert sparse_wire.main(["--fractions", "0.01"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if "0.01" in line]
    assert len(rows) == 2
    for row in rows:
        assert row[-1] == "yes"
        assert float(row[-2]) < 0.5  # under half of protocol 2's int64-index layout
