"""Deterministic synthetic brain volumes with tumours, rendered by per-site scanner profiles."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from services.node.data.cases import MODALITIES

GENERATOR_VERSION = 1
"""Bumped whenever synthesize_case changes its output, so old folders are regenerated."""

MIN_SIDE = 24
"""Smallest accepted volume side in voxels; below it the tumour shells cannot be resolved."""

# Base intensity of each tissue (rows: CSF, grey matter, white matter, oedema, enhancing rim,
# necrotic core; columns: t1, t1ce, t2, flair). Loosely follows clinical appearance: CSF dark
# on T1 and FLAIR but bright on T2, oedema bright on T2/FLAIR, the rim bright on T1ce only,
# the core dark on T1/T1ce and bright on T2.
_TISSUE = np.array(
    [
        [0.25, 0.25, 1.20, 0.15],
        [0.55, 0.55, 0.70, 0.60],
        [0.75, 0.75, 0.50, 0.45],
        [0.45, 0.45, 1.15, 1.25],
        [0.55, 1.40, 0.80, 0.90],
        [0.20, 0.25, 1.15, 0.70],
    ],
    dtype=np.float32,
)
_CSF, _GM, _WM, _OEDEMA, _RIM, _CORE = range(6)
_Volume = npt.NDArray[np.float32]
_Grid = tuple[_Volume, _Volume, _Volume]


@dataclass(frozen=True)
class SiteProfile:
    """How one hospital's scanner renders tissue; every field is per modality where a tuple.

    intensity_scale: multiplies the tissue intensities (scanner units differ by site).
    contrast_gamma: exponent applied to the tissue intensities (contrast differs by protocol).
    bias_field_strength: std of the log of a smooth multiplicative bias field.
    noise_std: std of additive Gaussian noise, as a fraction of intensity_scale.
    """

    intensity_scale: tuple[float, float, float, float]
    contrast_gamma: tuple[float, float, float, float]
    bias_field_strength: float
    noise_std: float

    def __post_init__(self) -> None:
        for name in ("intensity_scale", "contrast_gamma"):
            values = getattr(self, name)
            if len(values) != 4 or min(values) <= 0:
                raise ValueError(f"{name} must be 4 positive values, got {values}")
        for name in ("bias_field_strength", "noise_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def site_profile(site_index: int) -> SiteProfile:
    """The fixed scanner profile of site `site_index` (the same on every machine)."""
    if site_index < 0:
        raise ValueError(f"site_index must be >= 0, got {site_index}")
    rng = np.random.default_rng([0x5EED, site_index])
    scale = rng.uniform(300.0, 1500.0, 4).tolist()
    gamma = rng.uniform(0.8, 1.25, 4).tolist()
    return SiteProfile(
        intensity_scale=(scale[0], scale[1], scale[2], scale[3]),
        contrast_gamma=(gamma[0], gamma[1], gamma[2], gamma[3]),
        bias_field_strength=float(rng.uniform(0.05, 0.3)),
        noise_std=float(rng.uniform(0.01, 0.05)),
    )


def _upsample(values: _Volume, axis: int, size: int) -> _Volume:
    """Interpolate `values` along `axis` to `size` samples with smoothstep weights."""
    knots = values.shape[axis]
    position = np.linspace(0.0, knots - 1.0, size)
    left = np.minimum(np.floor(position).astype(np.int64), knots - 2)
    frac = position - left
    weight = (frac * frac * (3.0 - 2.0 * frac)).astype(np.float32)
    weight = weight.reshape([size if dim == axis else 1 for dim in range(values.ndim)])
    low, high = np.take(values, left, axis=axis), np.take(values, left + 1, axis=axis)
    result: _Volume = low + (high - low) * weight
    return result


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int, int], cells: int) -> _Volume:
    """Smooth random field [D, H, W] with zero mean and unit std, varying over ~1/cells of a side.

    Value noise: Gaussian values on a coarse (cells + 1)^3 lattice, interpolated separably,
    which costs a few passes over the volume instead of a full-volume Gaussian filter.
    """
    field = rng.standard_normal((cells + 1,) * 3).astype(np.float32)
    for axis in (2, 1, 0):  # only the last pass touches the full volume
        field = _upsample(field, axis, shape[axis])
    field -= field.mean()
    return field / max(float(field.std()), 1e-6)


def _sigmoid(x: npt.NDArray[np.floating[Any]]) -> _Volume:
    return np.asarray(0.5 * (1.0 + np.tanh(0.5 * x)), dtype=np.float32)


def check_shape(shape: tuple[int, ...]) -> None:
    """Raise ValueError unless `shape` is 3 sides of at least MIN_SIDE voxels."""
    if len(shape) != 3 or min(shape) < MIN_SIDE:
        raise ValueError(f"shape must be 3 sides of at least {MIN_SIDE} voxels, got {shape}")


def _anatomy(
    rng: np.random.Generator, grid: _Grid, shape: tuple[int, int, int]
) -> tuple[npt.NDArray[np.bool_], _Volume, _Volume, _Volume]:
    """Brain mask, white-matter and CSF fractions (each [D, H, W]) and brain radii [3].

    An irregular ellipsoid with a white-matter core, a cortical ribbon, sulcal CSF at the
    surface and two lateral ventricles, blended softly as partial-volume voxels would be.
    """
    z, y, x = grid
    radii = rng.uniform(0.78, 0.88, 3).astype(np.float32)
    radius = np.sqrt((z / radii[0]) ** 2 + (y / radii[1]) ** 2 + (x / radii[2]) ** 2)
    radius = radius + 0.04 * np.clip(_smooth_noise(rng, shape, 4), -2.5, 2.5)
    white = _sigmoid((0.72 + 0.08 * _smooth_noise(rng, shape, 6) - radius) / 0.03)
    ventricles = np.sqrt((z / 0.2) ** 2 + (y / 0.12) ** 2 + ((np.abs(x) - 0.12) / 0.07) ** 2)
    csf = np.maximum(_sigmoid((1.0 - ventricles) / 0.15), _sigmoid((radius - 0.95) / 0.02))
    return radius < 1.0, white, csf, radii


def _tumour(
    rng: np.random.Generator,
    grid: _Grid,
    brain: npt.NDArray[np.bool_],
    radii: _Volume,
) -> npt.NDArray[np.uint8]:
    """BraTS label map [D, H, W]: core (1) inside the enhancing rim (4) inside oedema (2).

    The core and rim are level sets of one noisy, rotated, anisotropic distance field, so the
    nesting holds by construction; the centre is placed so that the rim stays in the brain.
    """
    shape = brain.shape
    voxel = 2.0 / (min(shape) - 1)  # one voxel in normalised coordinates
    oedema_radius = rng.uniform(0.2, 0.34)
    rim_radius = oedema_radius * rng.uniform(0.5, 0.65)
    core_radius = max(rim_radius * rng.uniform(0.45, 0.65), 1.5 * voxel)
    rim_radius = max(rim_radius, core_radius + 2.5 * voxel)
    stretch = rng.uniform(0.85, 1.2, 3)
    # The solid field below is at least 0.7 x the distance, so the rim reaches at most `reach`
    # from the centre; the brain holds a ball of 0.9 x its smallest radius around the origin.
    reach = (rim_radius + voxel) / 0.7 * stretch.max()
    direction = rng.standard_normal(3)
    offset = np.clip(0.9 * radii.min() - reach, 0.0, 0.3) * rng.uniform()
    centre = (direction * offset / np.linalg.norm(direction)).astype(np.float32)
    rotation, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    offsets = [axis - centre[index] for index, axis in enumerate(grid)]
    distance = np.zeros(shape, dtype=np.float32)
    for row, scale in zip(rotation.astype(np.float32), stretch, strict=True):
        along = row[0] * offsets[0] + row[1] * offsets[1] + row[2] * offsets[2]
        distance += (along / np.float32(scale)) ** 2
    distance = np.sqrt(distance)
    solid = distance * (1.0 + 0.15 * np.clip(_smooth_noise(rng, shape, 5), -2.0, 2.0))
    # Additive, so that the oedema reaches at most 1.5 radii from the centre.
    diffuse = distance + 0.25 * oedema_radius * np.clip(_smooth_noise(rng, shape, 4), -2.0, 2.0)
    # Each shell also covers the dilated shell inside it, so no voxel of the core touches
    # oedema and no voxel of the rim touches background, however steep the noise.
    core = solid < core_radius
    rim = (solid < rim_radius) | _dilate(core)
    oedema = ((diffuse < oedema_radius) | _dilate(_dilate(rim))) & brain
    seg = np.zeros(shape, dtype=np.uint8)
    seg[oedema], seg[rim & brain], seg[core & brain] = 2, 4, 1
    return seg


def _dilate(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
    """Grow a mask [D, H, W] by one voxel along each axis (6-connectivity)."""
    grown = mask.copy()
    grown[1:] |= mask[:-1]
    grown[:-1] |= mask[1:]
    grown[:, 1:] |= mask[:, :-1]
    grown[:, :-1] |= mask[:, 1:]
    grown[:, :, 1:] |= mask[:, :, :-1]
    grown[:, :, :-1] |= mask[:, :, 1:]
    return grown


def synthesize_case(
    shape: tuple[int, int, int], rng: np.random.Generator, profile: SiteProfile
) -> tuple[_Volume, npt.NDArray[np.uint8]]:
    """Draw one synthetic skull-stripped case; all randomness comes from `rng`.

    Returns (image float32 [4, D, H, W] in MODALITIES order, zero outside the brain and
    positive inside; seg uint8 [D, H, W] with BraTS labels 0, 1 necrotic core, 2 oedema,
    4 enhancing rim). The site's profile sets contrast, bias field and noise.
    """
    check_shape(shape)
    axes = [np.linspace(-1.0, 1.0, side, dtype=np.float32) for side in shape]
    grid = (axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :])
    brain, white, csf, radii = _anatomy(rng, grid, shape)
    seg = _tumour(rng, grid, brain, radii)
    oedema, rim, core = seg == 2, seg == 4, seg == 1
    texture = 1.0 + 0.04 * _smooth_noise(rng, shape, 12)
    texture += 0.08 * (seg > 0) * _smooth_noise(rng, shape, 10)

    image = np.zeros((len(MODALITIES), *shape), dtype=np.float32)
    for channel in range(len(MODALITIES)):
        level = _TISSUE[:, channel]
        tissue = csf * level[_CSF] + (1.0 - csf) * (level[_GM] + white * (level[_WM] - level[_GM]))
        # Oedema infiltrates tissue that stays partly visible; the solid tumour replaces it.
        tissue[oedema] = 0.7 * level[_OEDEMA] + 0.3 * tissue[oedema]
        tissue[rim], tissue[core] = level[_RIM], level[_CORE]
        bias = np.exp(profile.bias_field_strength * _smooth_noise(rng, shape, 2))
        noise = profile.noise_std * rng.standard_normal(shape, dtype=np.float32)
        value = np.power(tissue * texture, profile.contrast_gamma[channel]) * bias + noise
        # Clamp inside the brain so that zero keeps meaning "outside the brain".
        value = np.maximum(value, 0.02) * profile.intensity_scale[channel]
        image[channel] = np.where(brain, value, 0.0)
    return image, seg
