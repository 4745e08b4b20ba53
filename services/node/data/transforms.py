"""Preprocessing at load with MONAI transforms: RAS orientation, voxel spacing, z-scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from monai.data.meta_tensor import MetaTensor
from monai.transforms.intensity.array import NormalizeIntensity
from monai.transforms.spatial.array import Orientation, Spacing

Pixdim = tuple[float, float, float]

DEFAULT_PIXDIM: Pixdim = (1.0, 1.0, 1.0)
"""Target voxel size in millimetres; BraTS is distributed at 1 mm isotropic already."""
SPACING_TOLERANCE_MM = 1e-3
"""A volume whose voxel sizes are all within this of the target is not resampled."""

Affine = npt.NDArray[np.float64]


def check_pixdim(pixdim: Sequence[float] | None) -> Pixdim | None:
    """Return `pixdim` as three positive floats (None keeps each file's own spacing)."""
    if pixdim is None:
        return None
    values = tuple(float(value) for value in pixdim)
    if len(values) != 3 or not all(np.isfinite(values)) or min(values) <= 0:
        raise ValueError(f"pixdim must be three positive sizes in mm, got {list(pixdim)}")
    return (values[0], values[1], values[2])


def voxel_sizes(affine: Affine) -> Pixdim:
    """Voxel sizes in mm along the three array axes of a NIfTI affine [4, 4]."""
    sizes = np.sqrt((np.asarray(affine, dtype=np.float64)[:3, :3] ** 2).sum(axis=0))
    return (float(sizes[0]), float(sizes[1]), float(sizes[2]))


def _meta(volume: npt.NDArray[np.generic], affine: Affine) -> MetaTensor:
    """A channel-first MetaTensor [C, X, Y, Z] over `volume` [C, X, Y, Z] with its affine."""
    return MetaTensor(
        torch.from_numpy(np.ascontiguousarray(volume)), affine=torch.as_tensor(affine)
    )


def output_spacing(affine: Affine, pixdim: Pixdim | None) -> Pixdim:
    """Voxel size in mm after ``preprocess(..., pixdim)`` of a volume with this affine."""
    return voxel_sizes(affine) if pixdim is None else pixdim


def to_ras(
    volume: npt.NDArray[np.generic], affine: Affine
) -> tuple[npt.NDArray[np.generic], Affine]:
    """Reorient `volume` [C, X, Y, Z] to RAS+ (MONAI ``Orientation``); return it and its affine.

    Only axis flips and permutations are applied, so values are copied exactly (a label map
    keeps its labels and dtype). The result is [C, D, H, W] with D, H, W running towards
    right, anterior and superior.
    """
    # labels=None: read the axis labels from the MetaTensor's space (RAS for NIfTI affines).
    oriented = Orientation(axcodes="RAS", labels=None)(_meta(volume, affine))
    if not isinstance(oriented, MetaTensor):
        raise TypeError(f"Orientation returned {type(oriented).__name__}, expected a MetaTensor")
    return np.ascontiguousarray(oriented.numpy()), oriented.affine.numpy().astype(np.float64)


def resample(
    volume: npt.NDArray[np.generic], affine: Affine, pixdim: Pixdim | None, *, label: bool
) -> npt.NDArray[np.generic]:
    """Resample `volume` [C, D, H, W] to voxels of `pixdim` mm (MONAI ``Spacing``).

    Images are interpolated trilinearly and come back float32; label maps (label=True) by
    nearest neighbour, in their own dtype, so no new label values appear. A volume already
    within SPACING_TOLERANCE_MM of `pixdim`, or pixdim None, is returned unchanged.
    """
    if pixdim is None:
        return volume
    current = voxel_sizes(affine)
    if all(abs(a - b) <= SPACING_TOLERANCE_MM for a, b in zip(current, pixdim, strict=True)):
        return volume
    source = volume.astype(np.float32) if label else volume
    spacing = Spacing(pixdim=pixdim, mode="nearest" if label else "bilinear")
    resampled = spacing(_meta(source, affine))
    if not isinstance(resampled, torch.Tensor):
        raise TypeError(f"Spacing returned {type(resampled).__name__}, expected a tensor")
    array = np.ascontiguousarray(resampled.numpy())
    result: npt.NDArray[np.generic] = (
        np.rint(array).astype(volume.dtype) if label else array.astype(np.float32)
    )
    return result


def normalise(image: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """Z-score each channel of `image` [C, ...] over its non-zero voxels; zeros stay zero.

    MONAI ``NormalizeIntensity(nonzero=True, channel_wise=True)``, as in the MONAI BraTS
    reference: the background outside the skull-stripped brain is left at 0, and a constant
    channel is only shifted (its standard deviation is taken as 1). Returns float32 [C, ...].
    """
    tensor = torch.from_numpy(np.array(image, dtype=np.float32))
    normalised = NormalizeIntensity(nonzero=True, channel_wise=True)(tensor)
    if not isinstance(normalised, torch.Tensor):
        raise TypeError(f"NormalizeIntensity returned {type(normalised).__name__}")
    return np.ascontiguousarray(normalised.numpy(), dtype=np.float32)


def preprocess(
    image: npt.NDArray[np.generic],
    image_affine: Affine,
    seg: npt.NDArray[np.generic],
    seg_affine: Affine,
    pixdim: Pixdim | None = DEFAULT_PIXDIM,
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.generic]]:
    """The loaders' one preprocessing step for a case already in RAS+ (see to_ras).

    image: [C, D, H, W] intensities; seg: [D, H, W] label map; each with its affine [4, 4].
    Both are resampled to `pixdim` (skipped when already there), then the image is z-scored
    per channel over its non-zero voxels. Returns (image float32 [C, D', H', W'], seg
    [D', H', W'] in its own dtype); D', H', W' equal D, H, W when no resampling was needed.
    Raises ValueError when resampling gives the image and the label map different shapes.
    """
    resampled = resample(image, image_affine, pixdim, label=False)
    labels = resample(seg[None], seg_affine, pixdim, label=True)[0]
    if resampled.shape[1:] != labels.shape:
        raise ValueError(
            f"after resampling to {list(pixdim or ())} mm the image is "
            f"{list(resampled.shape[1:])} but the label map is {list(labels.shape)}; "
            "their voxel sizes differ"
        )
    return normalise(resampled.astype(np.float32, copy=False)), labels
