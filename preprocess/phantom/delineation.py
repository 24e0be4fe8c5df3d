"""Atlas station delineations that vary as between raters: a jittered boundary and now and then a small shift.

The jitter is a smooth random displacement of a few mm applied to the label map; with `shift_probability` a
station is moved whole by `shift_mm`. Both are bounded so that on identical anatomy the majority vote of five
delineations keeps at least 95 % of node centres in their true station (tests check this).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class RaterVariation:
    jitter_rms_mm: float = 1.5
    control_spacing_mm: float = 16.0
    shift_probability: float = 0.12
    shift_mm: float = 3.0


def delineate(stations: np.ndarray, spacing_mm: float, rng: np.random.Generator,
              variation: RaterVariation = RaterVariation()) -> np.ndarray:
    """One rater's delineation (uint8 codes) of the true station map `stations` (z, y, x)."""
    control = tuple(int(np.ceil(n * spacing_mm / variation.control_spacing_mm)) + 2 for n in stations.shape)
    field = ndimage.gaussian_filter(rng.standard_normal((3, *control)), sigma=(0, 0.7, 0.7, 0.7))
    field *= variation.jitter_rms_mm / spacing_mm / max(float(np.sqrt(np.mean(field**2))), 1e-9)
    index = np.indices(stations.shape, dtype=np.float32)
    for axis in range(3):
        factors = [n / c for n, c in zip(stations.shape, control, strict=True)]
        up = ndimage.zoom(field[axis], factors, order=1, grid_mode=True, mode="nearest")
        index[axis] += up[: stations.shape[0], : stations.shape[1], : stations.shape[2]]
    drawn = ndimage.map_coordinates(stations, index, order=0, mode="nearest", prefilter=False).astype(np.uint8)
    for code in np.unique(stations[stations > 0]):
        if rng.random() >= variation.shift_probability:
            continue
        direction = rng.normal(size=3)
        step = np.rint(direction / np.linalg.norm(direction) * variation.shift_mm / spacing_mm).astype(int)
        moved = ndimage.shift((drawn == code).astype(np.uint8), step, order=0, mode="constant") > 0
        drawn[drawn == code] = 0
        drawn[moved & (drawn == 0)] = code
    return drawn
