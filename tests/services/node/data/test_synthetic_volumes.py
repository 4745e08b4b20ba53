"""Tests of the synthetic volume generator: shapes, determinism, anatomy and site contrast."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from services.node.data.brats import brats_labels_to_regions
from services.node.data.synthetic_volumes import SiteProfile, site_profile, synthesize_case

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
