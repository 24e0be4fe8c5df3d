"""Station statistics and tables: SUVmax, SUVmean, volume and centroid of known stations."""

import numpy as np
import pytest

from cache.grid import Grid
from preprocess.station_stats import station_tables


def test_statistics_of_known_stations():
    labels = np.zeros((4, 5, 6), dtype=np.uint8)
    labels[1:3, 1:3, 1:3] = 11  # station 7: 8 voxels
    labels[0, 0, 5] = 7  # station 4L: 1 voxel
    suv = np.arange(labels.size, dtype=np.float32).reshape(labels.shape) / 10
    grid = Grid(labels.shape, (2.0, 2.0, 3.0), (10.0, 20.0, 30.0))
    tables = {t.name: t for t in station_tables(labels, suv, grid, {11: 0.75, 7: 1.0})}
    assert list(tables) == ["4L", "7"]
    seven = tables["7"]
    inside = suv[labels == 11]
    assert seven.suv_max == pytest.approx(inside.max()) and seven.suv_mean == pytest.approx(inside.mean())
    assert seven.volume_ml == pytest.approx(8 * 2 * 2 * 3 / 1000)
    assert seven.centroid_vox == (1.5, 1.5, 1.5) and seven.bbox == (1, 1, 1, 3, 3, 3)
    assert seven.centroid_mm == pytest.approx((10 + 3.0, 20 + 3.0, 30 + 4.5))
    assert seven.vote_agreement == 0.75 and tables["4L"].vote_agreement == 1.0
    assert tables["4L"].suv_max == tables["4L"].suv_mean == pytest.approx(suv[0, 0, 5])
