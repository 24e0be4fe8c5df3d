"""Resampling with SimpleITK: an image onto another image's grid, or onto an isotropic grid of the same extent.

Intensities stay raw (HU, SUV, label ids); only the voxel grid changes. Geometry is physical: the new grid
covers the same region of the patient, so a landmark keeps its position in mm.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid

Interpolator = Literal["linear", "nearest", "bspline"]

_INTERPOLATORS = {
    "linear": sitk.sitkLinear,
    "nearest": sitk.sitkNearestNeighbor,
    "bspline": sitk.sitkBSpline,
}


def _interpolator(name: Interpolator) -> int:
    if name not in _INTERPOLATORS:
        raise ValueError(f"unknown interpolator {name!r}; use one of {', '.join(_INTERPOLATORS)}")
    return _INTERPOLATORS[name]


def grid_image(grid: Grid) -> sitk.Image:
    """An empty image (uint8) carrying `grid`, as the reference of a resampling."""
    image = sitk.Image([int(n) for n in grid.shape_zyx[::-1]], sitk.sitkUInt8)
    grid.apply_to_sitk(image)
    return image


def resample_like(
    image: sitk.Image, reference: sitk.Image, interpolator: Interpolator, default_value: float = 0.0
) -> sitk.Image:
    """`image` resampled onto the grid of `reference` (size, spacing, origin, direction), pixel type kept.

    Points of the reference grid outside `image` get `default_value` (e.g. -1024 for CT, 0 for SUV and labels).
    """
    return sitk.Resample(
        image, reference, sitk.Transform(), _interpolator(interpolator), float(default_value), image.GetPixelID()
    )


def isotropic_grid(image: sitk.Image, spacing_mm: float) -> tuple[tuple[int, int, int], tuple[float, float, float]]:
    """Size (x, y, z) and origin (mm) of the isotropic grid that covers the same box as `image`.

    The box is the voxels' outer faces: its corner stays put, so the grid's voxel centres shift by half the
    difference of the spacings, along the image's own axes.
    """
    if not spacing_mm > 0:
        raise ValueError(f"spacing_mm must be positive, got {spacing_mm}")
    old_spacing = np.asarray(image.GetSpacing(), dtype=np.float64)
    extent_mm = np.asarray(image.GetSize(), dtype=np.float64) * old_spacing
    size = np.maximum(np.round(extent_mm / spacing_mm), 1).astype(int)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    corner = np.asarray(image.GetOrigin(), dtype=np.float64) - direction @ (old_spacing / 2)
    origin = corner + direction @ np.full(3, spacing_mm / 2)
    return tuple(int(s) for s in size), tuple(float(o) for o in origin)


def resample_to_spacing(
    image: sitk.Image, spacing_mm: float, interpolator: Interpolator, default_value: float = 0.0
) -> sitk.Image:
    """`image` on an isotropic grid of `spacing_mm` covering the same physical box, same direction and pixel type."""
    size, origin = isotropic_grid(image, spacing_mm)
    return sitk.Resample(
        image,
        size,
        sitk.Transform(),
        _interpolator(interpolator),
        origin,
        (float(spacing_mm),) * 3,
        image.GetDirection(),
        float(default_value),
        image.GetPixelID(),
    )
