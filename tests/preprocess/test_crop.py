"""The mediastinum crop: lungs+trachea box plus margin, and the cropped grid keeps physical positions."""

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.crop import CT_OUTSIDE_HU, CropError, crop_structures, ct_on_grid, mediastinum_box
from preprocess.resample import grid_image
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


def _image(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    grid.apply_to_sitk(image)
    return image


def test_crop_keeps_landmark_position():
    # isotropic input: the isotropic grid of the crop is the input's own, so the landmark is not interpolated
    grid = Grid((30, 40, 50), (2.0, 2.0, 2.0), (-12.0, 40.0, 7.0), (0, 0, 1, 1, 0, 0, 0, 1, 0))
    structures = _structures()
    ct = np.zeros(grid.shape_zyx, dtype=np.int16)
    ct[15, 20, 25] = 100
    crop = crop_structures(_image(structures, grid), 2.0, margin_mm=5.0)
    assert crop.box == mediastinum_box(structures, 2.0, margin_mm=5.0)
    np.testing.assert_array_equal(crop.structures, structures[crop.box])
    ct_hu = ct_on_grid(_image(ct, grid), crop.reference)
    assert ct_hu.dtype == np.int16 and ct_hu.shape == crop.grid.shape_zyx
    new_index = np.argwhere(ct_hu == 100)[0]
    np.testing.assert_allclose(crop.grid.index_to_physical(new_index), grid.index_to_physical([15, 20, 25]))


def test_ct_outside_the_scanned_volume_is_air():
    grid = Grid((4, 4, 4), (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    far = Grid((3, 3, 3), (2.0, 2.0, 2.0), (100.0, 0.0, 0.0))
    ct_hu = ct_on_grid(_image(np.full((4, 4, 4), 40, dtype=np.int16), grid), grid_image(far))
    assert (ct_hu == CT_OUTSIDE_HU).all()


def test_no_lungs_is_refused():
    with pytest.raises(CropError, match="no lung or trachea voxels"):
        mediastinum_box(np.zeros((4, 4, 4), dtype=np.uint8), 1.0, 10.0)
