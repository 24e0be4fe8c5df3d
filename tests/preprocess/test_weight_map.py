"""Weight maps (paper Eq. 1): the numba tables agree with the numpy definition; edge cases behave."""

import numpy as np
import pytest

from preprocess.weight_map import probabilities_from_table, station_weights, weight_map_reference
from tests.preprocess.synthetic_scan import ellipsoid_stations


def test_numba_tables_agree_with_the_numpy_reference():
    labels = ellipsoid_stations((40, 44, 48), 2.0, np.random.default_rng(0))
    spacing = (2.5, 2.0, 1.5)  # anisotropic, so mm distances matter
    tables = station_weights(labels, spacing)
    assert set(tables) == set(np.unique(labels)) - {0}
    for code, table in tables.items():
        reference = weight_map_reference(labels, code, spacing)
        np.testing.assert_allclose(probabilities_from_table(table.index, table.cdf, labels.shape),
                                   reference / reference.sum(), rtol=1e-9, atol=1e-15)
        assert np.array_equal(np.sort(table.index), np.flatnonzero(reference > 0))
        assert table.cdf.dtype == np.float64 and table.cdf[-1] == 1.0 and np.all(np.diff(table.cdf) > 0)
        assert table.n_voxels == int((labels == code).sum())
        points = np.argwhere(labels == code)
        np.testing.assert_allclose(table.centroid_vox, points.mean(axis=0))
        assert table.bbox == (*points.min(axis=0), *(points.max(axis=0) + 1))


def test_weight_falls_linearly_with_mm_distance_from_the_centroid():
    labels = np.zeros((1, 1, 9), dtype=np.uint8)
    labels[0, 0, 2:7] = 4  # centroid at x = 4; d = 0, 1, 2 voxels of 3 mm; d_max = 6 mm
    weight = weight_map_reference(labels, 4, (1.0, 1.0, 3.0))
    np.testing.assert_allclose(weight[0, 0, 2:7], [0.0, 0.5, 1.0, 0.5, 0.0])
    table = station_weights(labels, (1.0, 1.0, 3.0))[4]
    assert list(table.index) == [3, 4, 5]  # the farthest voxels have w = 0 and are never drawn
    np.testing.assert_allclose(np.diff(table.cdf, prepend=0), [0.25, 0.5, 0.25])


def test_single_voxel_station_has_weight_one():
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 2, 0] = 17
    table = station_weights(labels, (1.0, 1.0, 1.0))[17]
    assert list(table.index) == [1 * 9 + 2 * 3 + 0] and list(table.cdf) == [1.0]


def test_labels_must_be_three_dimensional():
    with pytest.raises(ValueError, match=r"\(z, y, x\) array"):
        station_weights(np.zeros((4, 4), dtype=np.uint8), (1.0, 1.0, 1.0))


def test_a_code_beyond_the_stations_is_refused_not_skipped():
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 1, 1] = 18
    with pytest.raises(ValueError, match="label code 18 in the fused station map is beyond the 17 station codes"):
        station_weights(labels, (1.0, 1.0, 1.0))
