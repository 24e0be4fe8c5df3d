"""Node-to-station mapping accuracy on hand-made label volumes."""

import numpy as np
import pytest

from cache.grid import Grid
from cache.stations import station
from evaluate.atlas_analysis import mapped_codes, mapping_accuracy, mapping_markdown


def test_mapped_codes_follow_physical_geometry():
    labels = np.zeros((4, 4, 4), dtype=np.uint8)
    labels[1, 2, 3] = station("7").code
    grid = Grid((4, 4, 4), (2.0, 2.0, 2.0), (10.0, 0.0, 0.0))
    # voxel (z, y, x) = (1, 2, 3) sits at x = 10 + 3 * 2, y = 4, z = 2; points outside the volume map to 0
    codes = mapped_codes(labels, grid, np.array([[16.0, 4.0, 2.0], [16.4, 4.3, 2.2], [0.0, 0.0, 0.0]]))
    assert codes.tolist() == [station("7").code, station("7").code, 0]


def test_mapping_accuracy_per_station_and_zone():
    true = ["4R", "4R", "7", "10L", "2R"]
    mapped = np.array([station("4R").code, station("2R").code, 0, station("11L").code, station("2R").code])
    result = mapping_accuracy(true, mapped)
    assert result.per_station["4R"] == (1, 2) and result.per_station["7"] == (0, 1)
    assert result.station_accuracy == pytest.approx(2 / 5)
    # zones: 4R->2R both "upper" (right), 7 unmapped (wrong), 10L->11L both "hilar" (right), 2R right
    assert result.per_zone["upper"] == (3, 3) and result.per_zone["subcarinal"] == (0, 1)
    assert result.zone_accuracy == pytest.approx(4 / 5)
    assert result.n_unmapped == 1
    text = mapping_markdown(result)
    assert "| 4R | 1 / 2 | 0.50 |" in text and "| hilar | 1 / 1 | 1.00 |" in text


def test_cohort_mapping_reads_truth_tables_and_cache_labels(tmp_path):
    from evaluate.atlas_analysis import cohort_mapping_accuracy
    from tests.evaluate.tiny_cache import GRID, write_tiny_scan

    path = write_tiny_scan(tmp_path / "cache", "p0", {}, ())
    truth = tmp_path / "truth" / "s0"
    truth.mkdir(parents=True)
    # tiny cache: 4R fills x < 4 (x_mm < 8), 7 fills x >= 4; grid origin 0, spacing 2
    centre_4r, centre_7 = GRID.index_to_physical(np.array([2, 2, 1])), GRID.index_to_physical(np.array([2, 2, 6]))
    rows = ["node_id,station,malignant,x_mm,y_mm,z_mm",
            f"1,4R,0,{centre_4r[0]},{centre_4r[1]},{centre_4r[2]}",
            f"2,4R,1,{centre_7[0]},{centre_7[1]},{centre_7[2]}",
            "3,7,0,500,500,500"]
    (truth / "nodes.csv").write_text("\n".join(rows) + "\n")
    result = cohort_mapping_accuracy([path], ["s0"], tmp_path / "truth")
    assert result.n_nodes == 3 and result.n_unmapped == 1
    assert result.per_station["4R"] == (1, 2)
    assert cohort_mapping_accuracy([path], ["s0"], tmp_path / "nowhere") is None
    (truth / "nodes.csv").write_text("node_id,station\n1,4R\n")
    with pytest.raises(ValueError, match="x_mm, y_mm, z_mm missing"):
        cohort_mapping_accuracy([path], ["s0"], tmp_path / "truth")


def test_atlas_subsets_and_their_mcnemar_against_all():
    from evaluate.atlas_analysis import atlas_subsets, compare_subsets, subsets_markdown

    assert len(atlas_subsets(5, 3)) == 10 and atlas_subsets(5, 3)[0] == (0, 1, 2)
    with pytest.raises(ValueError, match="need 1 <= size"):
        atlas_subsets(3, 3)
    truth = np.zeros((2, 17), dtype=np.int8)
    truth[0, 7] = 1
    truth[1, :] = -1  # no station labels
    pred_all = np.clip(truth, 0, 1)
    worse = pred_all.copy()
    worse[0, 7] = 0  # misses the malignant station
    results = compare_subsets(truth, pred_all, {("a1", "a2", "a3"): pred_all, ("a1", "a2", "a4"): worse})
    assert results[0].mcnemar.p_value == 1.0 and results[0].accuracy == 1.0
    assert (results[1].mcnemar.only_a, results[1].mcnemar.only_b) == (0, 1)
    assert results[1].accuracy == pytest.approx(16 / 17) and results[1].n_stations == 17
    assert "| a1, a2, a4 | 0.941 | 1.000 | 0 / 1 | 1 |" in subsets_markdown(results, 2)
