"""Tests of writing synthetic cases and sites as NIfTIs, and their round trip through the loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from services.node.data.brats import (
    brats_labels_to_regions,
    find_cases,
    load_case,
    normalise_nonzero,
)
from services.node.data.synthetic_sites import uneven_site_sizes, write_case, write_site
from services.node.data.synthetic_volumes import site_profile, synthesize_case

SHAPE = (32, 32, 32)


def test_write_case_round_trips_through_the_loader(tmp_path: Path) -> None:
    image, seg = synthesize_case(SHAPE, np.random.default_rng(5), site_profile(0))

    written = write_case(tmp_path, "synth_001", image, seg)
    (found,) = find_cases(tmp_path)
    case = load_case(found)

    assert found == written
    assert written.label == tmp_path / "synth_001" / "synth_001_seg.nii.gz"
    np.testing.assert_array_equal(case.label, brats_labels_to_regions(seg))
    np.testing.assert_allclose(case.image, normalise_nonzero(image), atol=1e-5)


def test_write_site_writes_named_cases_idempotently(tmp_path: Path) -> None:
    files = write_site(tmp_path, site_index=1, num_cases=3, shape=SHAPE, seed=9)
    paths = [path for case in files for path in (*case.modalities, case.label) if path]
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in paths}

    again = write_site(tmp_path, site_index=1, num_cases=3, shape=SHAPE, seed=9)

    assert again == files
    assert [case.case_id for case in find_cases(tmp_path)] == [
        "site1_case000",
        "site1_case001",
        "site1_case002",
    ]
    assert {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in paths} == before


def test_write_site_is_byte_identical_across_folders(tmp_path: Path) -> None:
    first = write_site(tmp_path / "a", 0, 2, SHAPE, seed=1)
    second = write_site(tmp_path / "b", 0, 2, SHAPE, seed=1)

    for one, two in zip(first, second, strict=True):
        assert one.label is not None
        assert two.label is not None
        for path_one, path_two in zip(
            (*one.modalities, one.label), (*two.modalities, two.label), strict=True
        ):
            assert path_one.read_bytes() == path_two.read_bytes()


def test_write_site_repairs_changed_files_and_drops_stale_cases(tmp_path: Path) -> None:
    files = write_site(tmp_path, 0, 3, SHAPE, seed=1)
    assert files[0].label is not None
    original = files[0].label.read_bytes()
    files[0].label.write_bytes(b"tampered")

    fewer = write_site(tmp_path, 0, 2, SHAPE, seed=1)

    assert fewer == files[:2]
    assert files[0].label.read_bytes() == original
    assert [case.case_id for case in find_cases(tmp_path)] == ["site0_case000", "site0_case001"]


def test_write_site_seed_changes_the_data(tmp_path: Path) -> None:
    (one,) = write_site(tmp_path / "a", 0, 1, SHAPE, seed=1)
    (two,) = write_site(tmp_path / "b", 0, 1, SHAPE, seed=2)

    assert not np.array_equal(load_case(one).label, load_case(two).label)


@pytest.mark.parametrize(("sites", "total"), [(3, 20), (4, 9), (5, 40), (2, 5)])
def test_uneven_site_sizes_sum_and_minimum(sites: int, total: int) -> None:
    sizes = uneven_site_sizes(sites, total, seed=0)

    assert len(sizes) == sites
    assert sum(sizes) == total
    assert min(sizes) >= 2
    assert len(set(sizes)) > 1
    assert uneven_site_sizes(sites, total, seed=0) == sizes


def test_uneven_site_sizes_all_minimum_when_no_spare() -> None:
    assert uneven_site_sizes(3, 6, seed=0) == [2, 2, 2]


def test_uneven_site_sizes_rejects_too_few_cases() -> None:
    with pytest.raises(ValueError, match=r"at least 2 per site \(8\), got 7"):
        uneven_site_sizes(4, 7, seed=0)
