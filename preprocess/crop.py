"""Mediastinum crop: the bounding box of the lungs and trachea (TotalSegmentator v2 ids) plus a margin.

Scans (`preprocess.prepare`) and atlases (`preprocess.register.atlas_bank`) are both cropped here, by
`crop_structures` then `ct_on_grid`, so an atlas and a scan of the same body get the same box and grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.resample import grid_image, resample_like, resample_to_spacing
from preprocess.totalseg_labels import label_ids

CT_OUTSIDE_HU = -1024  # air, for CT samples outside the scanned volume

# Structures whose union bounds the crop; the mediastinum lies between the lungs, below the trachea's top.
CROP_STRUCTURES = (
    "lung_upper_lobe_left",
    "lung_lower_lobe_left",
    "lung_upper_lobe_right",
    "lung_middle_lobe_right",
    "lung_lower_lobe_right",
    "trachea",
)


class CropError(ValueError):
    """No lungs or trachea in the structure mask, so there is nothing to crop to."""


def mediastinum_box(
    structures: np.ndarray, spacing_mm: float | Sequence[float], margin_mm: float
) -> tuple[slice, slice, slice]:
    """Slices (z, y, x) of the lungs+trachea bounding box widened by `margin_mm` and clipped to the image.

    `structures` is a (z, y, x) label array in v2 ids; `spacing_mm` is one isotropic value or (x, y, z) as in
    SimpleITK. The margin is rounded up to whole voxels per axis.
    """
    if structures.ndim != 3:
        raise ValueError(f"structures must be a (z, y, x) array, got shape {structures.shape}")
    if margin_mm < 0:
        raise ValueError(f"margin_mm must be >= 0, got {margin_mm}")
    ids = [label_ids("v2")[name] for name in CROP_STRUCTURES]
    inside = np.isin(structures, ids)
    if not inside.any():
        raise CropError(
            f"no lung or trachea voxels (v2 ids {ids}) in the structure mask; check that the TotalSegmentator "
            "masks belong to this CT and cover the chest"
        )
    spacing_xyz = np.broadcast_to(np.asarray(spacing_mm, dtype=np.float64), (3,))
    margin_vox = np.ceil(margin_mm / spacing_xyz[::-1] - 1e-9).astype(int)
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = np.flatnonzero(inside.any(axis=other))
        start = max(int(hits[0]) - margin_vox[axis], 0)
        stop = min(int(hits[-1]) + 1 + margin_vox[axis], structures.shape[axis])
        box.append(slice(start, stop))
    return tuple(box)


def crop_grid(grid: Grid, box: tuple[slice, slice, slice]) -> Grid:
    """The sub-grid of `grid` selected by `box` (z, y, x slices with step 1): same spacing and direction."""
    starts, shape = [], []
    for axis, s in enumerate(box):
        start, stop, step = s.indices(grid.shape_zyx[axis])
        if step != 1 or stop <= start:
            raise ValueError(f"crop box {box} is empty or strided on grid of shape {grid.shape_zyx}")
        starts.append(start)
        shape.append(stop - start)
    origin = grid.index_to_physical(np.asarray(starts, dtype=np.float64))
    return Grid(tuple(shape), grid.spacing_mm, tuple(origin), grid.direction)


@dataclass(frozen=True)
class MediastinumCrop:
    """The crop of one scan's structures: `box` (z, y, x slices of the isotropic image), the cropped `grid`,
    the structures (uint8 v2 ids) inside it, and `reference`, an empty image on `grid` to resample onto."""

    box: tuple[slice, slice, slice]
    grid: Grid
    structures: np.ndarray
    reference: sitk.Image


def crop_structures(structures: sitk.Image, spacing_mm: float, margin_mm: float) -> MediastinumCrop:
    """TotalSegmentator masks (v2 ids, on the CT's grid) resampled (nearest) to isotropic `spacing_mm` and cropped
    to their mediastinum box widened by `margin_mm`."""
    isotropic = resample_to_spacing(structures, spacing_mm, "nearest", 0)
    labels = sitk.GetArrayViewFromImage(isotropic)
    box = mediastinum_box(labels, spacing_mm, margin_mm)
    grid = crop_grid(Grid.from_sitk(isotropic), box)
    # A copy, never a view: a view of a SimpleITK image dangles once the image is freed at return.
    return MediastinumCrop(box, grid, np.array(labels[box], dtype=np.uint8, copy=True), grid_image(grid))


def ct_on_grid(ct: sitk.Image, reference: sitk.Image) -> np.ndarray:
    """CT in HU (int16, z, y, x) resampled linearly onto the grid of `reference`; air outside the scanned volume."""
    hu = sitk.GetArrayFromImage(resample_like(sitk.Cast(ct, sitk.sitkFloat32), reference, "linear", CT_OUTSIDE_HU))
    return np.clip(np.rint(hu), -32768, 32767).astype(np.int16)
