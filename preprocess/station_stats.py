"""Per-station statistics (SUVmax, SUVmean, volume) and the station tables a cache file stores.

The statistics serve the SUVmax baseline and QA; each is computed over the station's bounding box only.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from cache.grid import Grid
from cache.stations import station_by_code, stations
from cache.writer import StationTable
from preprocess.weight_map import StationWeights, station_weights


def station_suv(suv: np.ndarray, labels: np.ndarray, weights: StationWeights) -> tuple[float, float]:
    """(SUVmax, SUVmean) of the voxels labelled with the station's code."""
    z0, y0, x0, z1, y1, x1 = weights.bbox
    values = suv[z0:z1, y0:y1, x0:x1][labels[z0:z1, y0:y1, x0:x1] == weights.code]
    return float(values.max()), float(values.mean(dtype=np.float64))


def station_tables(labels: np.ndarray, suv: np.ndarray, grid: Grid,
                   vote_agreement: Mapping[int, float]) -> tuple[StationTable, ...]:
    """Cache station tables of every station present in the fused `labels` (uint8 (z, y, x)), in code order.

    `vote_agreement[code]` is the mean fraction of atlases voting for the station inside it (the cache refuses NaN).
    """
    voxel_ml = float(np.prod(grid.spacing_mm)) / 1000.0
    tables = []
    for code, weights in station_weights(labels, grid.spacing_mm[::-1], n_codes=len(stations())).items():
        suv_max, suv_mean = station_suv(suv, labels, weights)
        centroid_mm = grid.index_to_physical(np.asarray(weights.centroid_vox))
        tables.append(StationTable(
            name=station_by_code(code).name, code=code, centroid_vox=weights.centroid_vox,
            centroid_mm=tuple(float(v) for v in centroid_mm), bbox=weights.bbox,
            volume_ml=weights.n_voxels * voxel_ml, suv_max=suv_max, suv_mean=suv_mean,
            vote_agreement=float(vote_agreement[code]), index=weights.index, cdf=weights.cdf,
        ))
    return tuple(tables)
