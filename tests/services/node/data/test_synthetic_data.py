"""Tests of the synthetic BraTS-layout generator and its NIfTI round trip through the loader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import (
    brats_labels_to_regions,
    find_cases,
    load_case,
    normalise_nonzero,
)
from services.node.data.synthetic import (
    SiteProfile,
    site_profile,
    synthesize_case,
    uneven_site_sizes,
    write_case,
    write_site,
)

SHAPE = (32, 32, 32)
T1, T1CE, T2, FLAIR = range(4)


def draw(seed: int, site: int = 0) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.uint8]]:
    return synthesize_case(SHAPE, np.random.default_rng(seed), site_profile(site))


def neighbours(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """The mask grown by one voxel along each axis (6-connectivity)."""
    grown = mask.copy()
    for axis in range(3):
        grown |= np.roll(mask, 1, axis) | np.roll(mask, -1, axis)
    return grown


def test_synthesize_case_shapes_and_dtypes() -> None:
    image, seg = draw(0)

    assert image.shape == (4, *SHAPE)
    assert image.dtype == np.float32
    assert seg.shape == SHAPE
    assert seg.dtype == np.uint8
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}


def test_synthesize_case_same_seed_gives_identical_arrays() -> None:
    first, again, other = draw(3), draw(3), draw(4)

    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[1], other[1])
    assert not np.allclose(first[0], other[0])


@pytest.mark.parametrize("seed", range(6))
def test_synthesize_case_regions_are_nested(seed: int) -> None:
    image, seg = draw(seed)
    tc, wt, et = brats_labels_to_regions(seg).astype(bool)
    core, brain = seg == 1, image[0] != 0

    assert core.sum() > 0
    assert et.sum() > 0
    assert (wt & ~tc).sum() > 0  # some oedema
    assert not (et & ~tc).any()
    assert not (tc & ~wt).any()
    # The necrotic core touches only the rim, and the rim only the core and the oedema.
    assert np.isin(seg[neighbours(core)], (1, 4)).all()
    assert np.isin(seg[neighbours(seg == 4)], (1, 2, 4)).all()
    assert not (wt & ~brain).any()


def test_synthesize_case_zero_exactly_outside_the_brain() -> None:
    image, _ = draw(1)
    brain = image[0] != 0

    assert 0.1 < brain.mean() < 0.6
    for channel in range(4):
        np.testing.assert_array_equal(image[channel] != 0, brain)
        assert (image[channel][brain] > 0).all()


@pytest.mark.parametrize(("seed", "site"), [(0, 0), (1, 1), (2, 2), (3, 0)])
def test_synthesize_case_modalities_show_distinct_tumour_contrast(seed: int, site: int) -> None:
    image, seg = draw(seed, site)
    healthy = (seg == 0) & (image[0] != 0)

    def ratio(channel: int, label: int) -> float:
        """Mean in the label over the median of healthy brain, in one modality."""
        return float(image[channel][seg == label].mean() / np.median(image[channel][healthy]))

    assert ratio(FLAIR, 2) > 1.4  # oedema bright on FLAIR
    assert ratio(T2, 2) > 1.1  # and on T2
    assert ratio(T1CE, 4) > 1.5  # the rim enhances with contrast ...
    assert ratio(T1CE, 4) > 1.3 * ratio(T1, 4)  # ... and not without it
    assert ratio(T1, 1) < 0.6  # necrotic core dark on T1
    assert ratio(T2, 1) > 1.2  # and bright on T2


def test_site_profile_is_fixed_and_differs_between_sites() -> None:
    assert site_profile(2) == site_profile(2)
    assert len({site_profile(site) for site in range(4)}) == 4


def test_sites_give_different_intensity_statistics() -> None:
    # Same anatomy (same seed), different scanners: per-channel brain statistics move.
    stats = []
    for site in range(3):
        image, _ = draw(7, site)
        brain = image[0] != 0
        stats.append([(image[c][brain].mean(), image[c][brain].std()) for c in range(4)])
    values = np.array(stats)  # [site, channel, (mean, std)]

    for a, b in ((0, 1), (0, 2), (1, 2)):
        assert np.max(np.abs(values[a] / values[b] - 1.0)) > 0.1


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("intensity_scale", (1.0, 1.0, 0.0, 1.0)),
        ("contrast_gamma", (1.0, 1.0, 1.0)),
        ("bias_field_strength", -0.1),
        ("noise_std", -1.0),
    ],
)
def test_site_profile_rejects_bad_values(field: str, value: object) -> None:
    valid: dict[str, object] = {
        "intensity_scale": (1.0, 1.0, 1.0, 1.0),
        "contrast_gamma": (1.0, 1.0, 1.0, 1.0),
        "bias_field_strength": 0.1,
        "noise_std": 0.01,
    }
    with pytest.raises(ValueError, match=f"^{field} must be"):
        SiteProfile(**{**valid, field: value})  # type: ignore[arg-type]


def test_site_profile_rejects_negative_index() -> None:
    with pytest.raises(ValueError, match="site_index must be >= 0, got -1"):
        site_profile(-1)


def test_synthesize_case_rejects_small_shape() -> None:
    with pytest.raises(ValueError, match=r"at least 24 voxels, got \(8, 32, 32\)"):
        synthesize_case((8, 32, 32), np.random.default_rng(0), site_profile(0))


def test_write_case_round_trips_through_the_loader(tmp_path: Path) -> None:
    image, seg = draw(5)

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
