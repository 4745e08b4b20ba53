"""Tests of the quality benchmark's synthetic cohort."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.cohort import CohortConfig, describe, main, site_sizes, write_cohort


def test_default_cohort_is_at_least_40_uneven_cases_over_4_sites() -> None:
    config = CohortConfig()

    sizes = site_sizes(config)

    assert config.num_sites == 4
    assert sum(sizes) == config.total_cases >= 40
    assert len(set(sizes)) > 1
    assert min(sizes) >= 2


def test_write_cohort_is_deterministic_and_reused(tmp_path: Path) -> None:
    config = CohortConfig(num_sites=3, total_cases=7, volume=24, seed=5)

    first = write_cohort(tmp_path / "a", config)
    again = write_cohort(tmp_path / "b", config)
    mtime = first[0].cases[0].modalities[0].stat().st_mtime_ns
    reused = write_cohort(tmp_path / "a", config)

    assert [site.name for site in first] == ["site-1", "site-2", "site-3"]
    assert [len(site.cases) for site in first] == site_sizes(config)
    for left, right in zip(first, again, strict=True):
        for a, b in zip(left.cases, right.cases, strict=True):
            assert a.modalities[2].read_bytes() == b.modalities[2].read_bytes()
    assert reused[0].cases[0].modalities[0].stat().st_mtime_ns == mtime


def test_describe_lists_each_sites_scanner(tmp_path: Path) -> None:
    sites = write_cohort(tmp_path, CohortConfig(num_sites=2, total_cases=4, volume=24))

    lines = describe(sites).splitlines()

    assert lines[0].startswith("site     cases  bias")
    assert [line.split()[:2] for line in lines[1:]] == [["site-1", "2"], ["site-2", "2"]]
    assert lines[1].split()[2:4] != lines[2].split()[2:4]  # bias and noise differ by site


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_sites": 0}, r"num_sites must be in \[1, 64\], got 0"),
        ({"total_cases": 7}, r"total_cases must be at least 2 per site \(8\), got 7"),
        ({"volume": 16}, "volume must be at least 24 voxels, got 16"),
        ({"seed": -1}, "seed must be >= 0, got -1"),
    ],
)
def test_cohort_config_rejects_bad_values(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CohortConfig(**kwargs)


def test_main_writes_the_cohort(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["--out", str(tmp_path), "--sites", "2", "--cases", "4", "--volume", "24"])

    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == ["site-1", "site-2"]
    assert "cohort of 4 cases of 24^3 voxels" in capsys.readouterr().out
