"""A case in memory: four MRI modalities and the three tumour-region masks."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

MODALITIES: tuple[str, str, str, str] = ("t1", "t1ce", "t2", "flair")
"""Input channel order of every image tensor fedseg builds."""


@dataclass(frozen=True)
class Case:
    """One patient, ready for training.

    image: float32 [4, D, H, W], channels in MODALITIES order, normalised per channel.
    label: [3, D, H, W], binary masks for TC, WT, ET (shared.model.REGIONS order); float32
        as the loaders build it, uint8 as the case cache stores it. Either may be a read-only
        memory map (services.node.data.cache): readers copy what they change.
    spacing: voxel size in mm along D, H, W (1 mm after the loaders' default resampling).
    """

    case_id: str
    image: npt.NDArray[np.float32]
    label: npt.NDArray[np.float32] | npt.NDArray[np.uint8]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.image.ndim != 4 or self.image.shape[0] != len(MODALITIES):
            raise ValueError(f"image must be [4, D, H, W], got {list(self.image.shape)}")
        if self.label.shape != (3, *self.image.shape[1:]):
            raise ValueError(
                f"label must be [3, D, H, W] matching the image, got {list(self.label.shape)} "
                f"for image {list(self.image.shape)}"
            )
        if len(self.spacing) != 3 or not all(math.isfinite(s) and s > 0 for s in self.spacing):
            raise ValueError(f"spacing must be three positive sizes in mm, got {self.spacing}")

    @functools.cached_property
    def foreground(self) -> npt.NDArray[np.intp]:
        """Flat indices of the voxels inside any tumour region (WT contains TC and ET).

        Computed on first use and kept: training draws tumour-centred crops from it every
        round, and the batch worker threads read it.
        """
        return np.flatnonzero(self.label.any(axis=0))
