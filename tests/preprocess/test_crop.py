"""The mediastinum crop: lungs+trachea box plus margin, and the cropped grid keeps physical positions."""

import numpy as np
import pytest

from cache.grid import Grid
from preprocess.crop import CropError, crop_arrays, mediastinum_box
from preprocess.totalseg_labels import label_ids


def _structures() -> np.ndarray:
    ids = label_ids("v2")
    labels = np.zeros((30, 40, 50), dtype=np.uint8)
    labels[10:20, 12:25, 5:15] = ids["lung_upper_lobe_right"]
    labels[8:18, 12:25, 30:40] = ids["lung_lower_lobe_left"]
    labels[18:22, 15:18, 20:24] = ids["trachea"]
    labels[0:5, 0:5, 0:5] = ids["liver"]  # not part of the box
    return labels


def test_box_is_lungs_and_trachea_plus_margin_in_voxels():
    box = mediastinum_box(_structures(), (2.0, 1.0, 3.0), margin_mm=4.0)  # spacing (x, y, z)
    # margins: z 4/3 -> 2 voxels, y 4/1 -> 4, x 4/2 -> 2; clipped at the image border
    assert box == (slice(6, 24), slice(8, 29), slice(3, 42))


def test_box_is_clipped_to_the_image():
    box = mediastinum_box(_structures(), 1.0, margin_mm=100.0)
    assert box == (slice(0, 30), slice(0, 40), slice(0, 50))


def test_crop_keeps_landmark_position():
    grid = Grid((30, 40, 50), (2.0, 1.0, 3.0), (-12.0, 40.0, 7.0), (0, 0, 1, 1, 0, 0, 0, 1, 0))
    structures = _structures()
    ct = np.zeros(grid.shape_zyx, dtype=np.int16)
    ct[15, 20, 25] = 100
    box = mediastinum_box(structures, grid.spacing_mm, margin_mm=5.0)
    cropped, cropped_grid = crop_arrays({"ct_hu": ct, "structures": structures, "lesions": None}, grid, box)
    assert cropped["lesions"] is None
    assert cropped["ct_hu"].shape == cropped_grid.shape_zyx
    new_index = np.argwhere(cropped["ct_hu"] == 100)[0]
    np.testing.assert_allclose(cropped_grid.index_to_physical(new_index), grid.index_to_physical([15, 20, 25]))


def test_no_lungs_is_refused():
    with pytest.raises(CropError, match="no lung or trachea voxels"):
        mediastinum_box(np.zeros((4, 4, 4), dtype=np.uint8), 1.0, 10.0)
