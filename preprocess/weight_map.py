"""Station weight maps (paper Eq. 1) stored as sampling tables.

Inside a fused station mask, w = 1 - d / d_max, with d the Euclidean distance in mm (float) from a voxel to
the station centroid and d_max its largest value in the mask; 0 outside. In the degenerate case where every
voxel lies at d_max (a one-voxel station, or a 2x2x2 cube), every voxel gets w = 1. Computed with numba over each
station's bounding box only, in two passes over the label volume in all (boxes and centroids, then distances).
What the cache keeps is the sampling table: the flat indices of the voxels with w > 0 and the float64 cdf of
their normalised weights (docs/architecture.md#the-cache-contract).
`weight_map_reference` is the plain numpy definition, for tests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np


@dataclass(frozen=True)
class StationWeights:
    """Weight map of one station as a sampling table, with the geometry it was computed from."""

    code: int
    centroid_vox: tuple[float, float, float]  # (z, y, x)
    bbox: tuple[int, int, int, int, int, int]  # (z0, y0, x0, z1, y1, x1), half-open
    n_voxels: int  # voxels of the station mask
    index: np.ndarray  # int32 flat (z, y, x) indices with w > 0
    cdf: np.ndarray  # float64, last value exactly 1.0


@numba.njit(cache=True)
def _boxes_and_sums(labels, n_codes):
    """Per code 1..n_codes: bounding box (z0, y0, x0, z1, y1, x1), voxel count, sum of (z, y, x)."""
    bbox = np.empty((n_codes + 1, 6), dtype=np.int64)
    bbox[:, :3] = np.iinfo(np.int64).max
    bbox[:, 3:] = -1
    count = np.zeros(n_codes + 1, dtype=np.int64)
    sums = np.zeros((n_codes + 1, 3), dtype=np.float64)
    depth, height, width = labels.shape
    for z in range(depth):
        for y in range(height):
            for x in range(width):
                c = labels[z, y, x]
                if c == 0 or c > n_codes:
                    continue
                count[c] += 1
                sums[c, 0] += z
                sums[c, 1] += y
                sums[c, 2] += x
                bbox[c, 0] = min(bbox[c, 0], z)
                bbox[c, 1] = min(bbox[c, 1], y)
                bbox[c, 2] = min(bbox[c, 2], x)
                bbox[c, 3] = max(bbox[c, 3], z + 1)
                bbox[c, 4] = max(bbox[c, 4], y + 1)
                bbox[c, 5] = max(bbox[c, 5], x + 1)
    return bbox, count, sums


@numba.njit(cache=True)
def _distances_in_box(labels, code, bbox, centroid, spacing, n):
    """Flat indices and distances (mm) to `centroid` of the `n` voxels labelled `code` inside `bbox`."""
    height, width = labels.shape[1], labels.shape[2]
    index = np.empty(n, dtype=np.int64)
    distance = np.empty(n, dtype=np.float64)
    m = 0
    for z in range(bbox[0], bbox[3]):
        dz = (z - centroid[0]) * spacing[0]
        for y in range(bbox[1], bbox[4]):
            dy = (y - centroid[1]) * spacing[1]
            for x in range(bbox[2], bbox[5]):
                if labels[z, y, x] == code:
                    dx = (x - centroid[2]) * spacing[2]
                    index[m] = (z * height + y) * width + x
                    distance[m] = np.sqrt(dz * dz + dy * dy + dx * dx)
                    m += 1
    return index, distance


def _table(index: np.ndarray, distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d_max = distance.max()
    weight = np.ones_like(distance) if d_max == 0 else 1.0 - distance / d_max
    keep = weight > 0
    if not keep.any():  # every voxel lies at d_max (e.g. a 2x2x2 cube): Eq. 1 is 0 everywhere, so draw uniformly
        weight, keep = np.ones_like(distance), np.ones(len(distance), dtype=bool)
    cdf = np.cumsum(weight[keep])
    cdf /= cdf[-1]
    cdf[-1] = 1.0
    return index[keep].astype(np.int32), cdf


def station_weights(labels: np.ndarray, spacing_zyx_mm: tuple[float, float, float],
                    n_codes: int = 17) -> dict[int, StationWeights]:
    """Sampling tables of every station code 1..n_codes present in `labels` (uint8 (z, y, x)).

    `spacing_zyx_mm` is the voxel size per array axis (z, y, x), i.e. a Grid's spacing_mm reversed.
    """
    if labels.ndim != 3:
        raise ValueError(f"labels must be a (z, y, x) array, got shape {labels.shape}")
    if labels.size >= 2**31:
        raise ValueError(f"{labels.shape} has too many voxels for int32 flat indices")
    labels = np.ascontiguousarray(labels)
    if labels.size and int(labels.max()) > n_codes:
        raise ValueError(f"label code {int(labels.max())} in the fused station map is beyond the {n_codes} station "
                         "codes; the fusion wrote a label that is no station")
    spacing = np.asarray(spacing_zyx_mm, dtype=np.float64)
    bbox, count, sums = _boxes_and_sums(labels, n_codes)
    tables = {}
    for code in np.flatnonzero(count):
        centroid = sums[code] / count[code]
        index, distance = _distances_in_box(labels, labels.dtype.type(code), bbox[code], centroid, spacing,
                                            count[code])
        flat, cdf = _table(index, distance)
        tables[int(code)] = StationWeights(int(code), tuple(float(v) for v in centroid),
                                           tuple(int(v) for v in bbox[code]), int(count[code]), flat, cdf)
    return tables


def weight_map_reference(labels: np.ndarray, code: int, spacing_zyx_mm: tuple[float, float, float]) -> np.ndarray:
    """Paper Eq. 1 over the whole volume with numpy: float64 (z, y, x), 0 outside the station."""
    mask = labels == code
    points = np.argwhere(mask).astype(np.float64)
    weight = np.zeros(labels.shape, dtype=np.float64)
    if len(points) == 0:
        return weight
    distance = np.linalg.norm((points - points.mean(axis=0)) * np.asarray(spacing_zyx_mm), axis=1)
    d_max = distance.max()
    values = np.ones_like(distance) if d_max == 0 else 1.0 - distance / d_max
    weight[mask] = values if values.max() > 0 else 1.0
    return weight


def probabilities_from_table(index: np.ndarray, cdf: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """The per-voxel sampling probability a table encodes, as a float64 (z, y, x) volume."""
    probability = np.zeros(int(np.prod(shape)), dtype=np.float64)
    probability[index] = np.diff(cdf, prepend=0.0)
    return probability.reshape(shape)
