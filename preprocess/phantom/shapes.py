"""Analytic shapes rasterised on a regular grid: ellipsoids, rounded boxes and tubes along polylines.

A `Canvas` is an axis-aligned grid in a millimetre frame (x, y, z); arrays are (z, y, x). Each primitive is
evaluated only inside its own bounding box, with open (broadcast) coordinate arrays, so drawing stays cheap on
a 1 mm grid of tens of millions of voxels.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

Box = tuple[slice, slice, slice]


@dataclass(frozen=True)
class Canvas:
    """Grid of `shape_zyx` voxels of `spacing_mm`, voxel (0, 0, 0) centred at `origin_mm` (x, y, z)."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: float
    origin_mm: tuple[float, float, float]

    def axis_mm(self, axis: int) -> np.ndarray:
        """Centre coordinates (mm) along x (0), y (1) or z (2)."""
        n = self.shape_zyx[2 - axis]
        return (self.origin_mm[axis] + self.spacing_mm * np.arange(n)).astype(np.float32)

    def box(self, lo_mm: Sequence[float], hi_mm: Sequence[float]) -> tuple[Box, np.ndarray, np.ndarray, np.ndarray]:
        """Slices of the voxels whose centres fall in [lo, hi] (x, y, z), and open coordinates z, y, x there."""
        slices, coords = [], []
        for axis in (2, 1, 0):
            n = self.shape_zyx[2 - axis]
            first = int(np.ceil((lo_mm[axis] - self.origin_mm[axis]) / self.spacing_mm))
            last = int(np.floor((hi_mm[axis] - self.origin_mm[axis]) / self.spacing_mm)) + 1
            first, last = max(first, 0), min(max(last, 0), n)
            first = min(first, last)
            slices.append(slice(first, last))
            coords.append(self.axis_mm(axis)[first:last])
        z, y, x = coords
        return tuple(slices), z[:, None, None], y[None, :, None], x[None, None, :]


def ellipsoid(canvas: Canvas, centre: Sequence[float], semi_mm: Sequence[float]) -> tuple[Box, np.ndarray]:
    """Axis-aligned ellipsoid: slices of its box and the boolean mask inside them."""
    c, a = np.asarray(centre, np.float32), np.asarray(semi_mm, np.float32)
    box, z, y, x = canvas.box(c - a, c + a)
    inside = ((x - c[0]) / a[0]) ** 2 + ((y - c[1]) / a[1]) ** 2 + ((z - c[2]) / a[2]) ** 2 <= 1.0
    return box, inside


def rounded_box(
    canvas: Canvas, lo_mm: Sequence[float], hi_mm: Sequence[float], shear_y_per_z: float = 0.0, power: int = 4
) -> tuple[Box, np.ndarray]:
    """Superellipsoid filling the box [lo, hi] (a box with rounded corners).

    With `shear_y_per_z` the box's y range moves by that many mm per mm of z (it follows a sloping trachea):
    the test uses y' = y + shear * z.
    """
    lo, hi = np.asarray(lo_mm, np.float32), np.asarray(hi_mm, np.float32)
    c, a = (lo + hi) / 2, (hi - lo) / 2
    slope_span = abs(shear_y_per_z) * max(abs(lo[2]), abs(hi[2]))
    box_lo, box_hi = lo.copy(), hi.copy()
    box_lo[1] -= slope_span
    box_hi[1] += slope_span
    box, z, y, x = canvas.box(box_lo, box_hi)
    y_sheared = y + shear_y_per_z * z
    inside = (
        ((x - c[0]) / a[0]) ** power + ((y_sheared - c[1]) / a[1]) ** power + ((z - c[2]) / a[2]) ** power <= 1.0
    )
    return box, inside


def tube(canvas: Canvas, points_mm: Sequence[Sequence[float]], radii_mm: Sequence[float] | float
         ) -> Iterator[tuple[Box, np.ndarray]]:
    """A tube along a polyline with radius interpolated along each segment (round caps): one mask per segment."""
    points = np.asarray(points_mm, np.float32)
    radii = np.broadcast_to(np.asarray(radii_mm, np.float32), (len(points),))
    for p, q, rp, rq in zip(points[:-1], points[1:], radii[:-1], radii[1:], strict=True):
        r_max = max(rp, rq)
        box, z, y, x = canvas.box(np.minimum(p, q) - r_max, np.maximum(p, q) + r_max)
        d = q - p
        length2 = float(d @ d) or 1e-6
        t = np.clip(((x - p[0]) * d[0] + (y - p[1]) * d[1] + (z - p[2]) * d[2]) / length2, 0.0, 1.0)
        dist2 = (x - p[0] - t * d[0]) ** 2 + (y - p[1] - t * d[1]) ** 2 + (z - p[2] - t * d[2]) ** 2
        radius = rp + t * (rq - rp)
        yield box, dist2 <= radius**2


def paint(volume: np.ndarray, box: Box, inside: np.ndarray, value: int, only_on: Sequence[int] | None = None) -> None:
    """Set `value` where `inside` (within `box`), optionally only over voxels currently holding one of `only_on`."""
    view = volume[box]
    mask = np.broadcast_to(inside, view.shape)
    if only_on is not None:
        mask = mask & np.isin(view, only_on)
    view[mask] = value
