"""Mediastinum crop: the bounding box of the lungs and trachea (TotalSegmentator v2 ids) plus a margin."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cache.grid import Grid
from preprocess.totalseg_labels import label_ids

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


def crop_arrays(
    arrays: dict[str, np.ndarray | None], grid: Grid, box: tuple[slice, slice, slice]
) -> tuple[dict[str, np.ndarray | None], Grid]:
    """Each (z, y, x) array cropped to `box` (None passes through), with the cropped grid."""
    for name, array in arrays.items():
        if array is not None and array.shape != grid.shape_zyx:
            raise ValueError(f"array {name!r} has shape {array.shape}, grid has {grid.shape_zyx}")
    cropped = {name: None if a is None else np.ascontiguousarray(a[box]) for name, a in arrays.items()}
    return cropped, crop_grid(grid, box)
