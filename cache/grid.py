"""Physical geometry of a voxel grid, kept exactly from the input images to the cache and back.

Arrays are (z, y, x) everywhere; the geometry itself follows ITK/SimpleITK: `spacing_mm`, `origin_mm` and the
columns of `direction` are in (x, y, z) order, in the LPS patient frame, so a `Grid` round-trips to a
SimpleITK image without any axis juggling.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Grid:
    """Voxel grid: `shape_zyx` voxels, `spacing_mm` (x, y, z), `origin_mm` (x, y, z) of voxel 0, `direction`
    (3x3 row-major, columns are the x, y, z axes' unit vectors)."""

    shape_zyx: tuple[int, int, int]
    spacing_mm: tuple[float, float, float]
    origin_mm: tuple[float, float, float]
    direction: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape_zyx", tuple(int(v) for v in self.shape_zyx))
        object.__setattr__(self, "spacing_mm", tuple(float(v) for v in self.spacing_mm))
        object.__setattr__(self, "origin_mm", tuple(float(v) for v in self.origin_mm))
        object.__setattr__(self, "direction", tuple(float(v) for v in self.direction))
        if len(self.direction) != 9 or len(self.spacing_mm) != 3 or len(self.origin_mm) != 3:
            raise ValueError(f"malformed grid: {self}")

    @property
    def direction_matrix(self) -> np.ndarray:
        return np.asarray(self.direction, dtype=np.float64).reshape(3, 3)

    def index_to_physical(self, index_zyx: np.ndarray) -> np.ndarray:
        """Physical points (..., 3) in mm, (x, y, z), of voxel indices (..., 3) given as (z, y, x)."""
        ijk = np.asarray(index_zyx, dtype=np.float64)[..., ::-1]
        return np.asarray(self.origin_mm) + (ijk * np.asarray(self.spacing_mm)) @ self.direction_matrix.T

    def physical_to_index(self, points_mm: np.ndarray) -> np.ndarray:
        """Continuous voxel indices (..., 3) as (z, y, x) of physical points (..., 3) in mm, (x, y, z)."""
        offset = np.asarray(points_mm, dtype=np.float64) - np.asarray(self.origin_mm)
        ijk = (offset @ self.direction_matrix) / np.asarray(self.spacing_mm)
        return ijk[..., ::-1]

    def to_attrs(self) -> dict[str, list]:
        """HDF5 attributes of an image dataset (spacing, origin, direction; docs/architecture.md#the-cache-contract)."""
        return {"spacing": list(self.spacing_mm), "origin": list(self.origin_mm), "direction": list(self.direction)}

    @classmethod
    def from_attrs(cls, shape_zyx: tuple[int, ...], attrs) -> Grid:
        return cls(tuple(shape_zyx), tuple(attrs["spacing"]), tuple(attrs["origin"]), tuple(attrs["direction"]))

    @classmethod
    def from_sitk(cls, image) -> Grid:
        """Grid of a SimpleITK image (its size (x, y, z) becomes shape (z, y, x))."""
        return cls(tuple(image.GetSize())[::-1], image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    def apply_to_sitk(self, image) -> None:
        """Stamp this grid's geometry on a SimpleITK image made from a (z, y, x) array."""
        if tuple(image.GetSize())[::-1] != self.shape_zyx:
            raise ValueError(f"image of size {image.GetSize()} (x, y, z) does not fit grid shape {self.shape_zyx}")
        image.SetSpacing(self.spacing_mm)
        image.SetOrigin(self.origin_mm)
        image.SetDirection(self.direction)
