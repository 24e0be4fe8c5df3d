import numpy as np
import pytest

from preprocess.register.atlas_bank import AtlasBankError, load_atlas_bank

from .conftest import toy_scan, write_atlas, write_image


def test_bank_is_read_resampled_and_cropped(toy_bank):
    bank = load_atlas_bank(toy_bank, 4.0, 8.0)
    assert bank.names == ("atlas0", "atlas1", "atlas2")
    for atlas in bank.atlases:
        assert atlas.grid.spacing_mm == (4.0, 4.0, 4.0)
        assert atlas.ct_hu.shape == atlas.structures.shape == atlas.stations.shape == atlas.grid.shape_zyx
        assert set(np.unique(atlas.stations)) == {0, 7, 8, 11}  # 4L, 4R, 7
    coarse = load_atlas_bank(toy_bank, 8.0, 8.0)
    assert coarse.atlases[0].grid.spacing_mm == (8.0, 8.0, 8.0)


def test_bank_errors_name_the_problem(tmp_path):
    with pytest.raises(AtlasBankError, match="is not a folder"):
        load_atlas_bank(tmp_path / "nowhere", 4.0, 8.0)
    with pytest.raises(AtlasBankError, match="holds no atlas"):
        load_atlas_bank(tmp_path, 4.0, 8.0)
    scan = toy_scan()
    folder = write_atlas(tmp_path / "bad", scan, "bad")
    (folder / "stations.nii.gz").unlink()
    with pytest.raises(AtlasBankError, match="missing stations.nii.gz"):
        load_atlas_bank(tmp_path, 4.0, 8.0)
    stations = scan.stations.copy()
    stations[stations == 11] = 23
    write_image(stations, scan.grid, folder / "stations.nii.gz")
    with pytest.raises(AtlasBankError, match="label 23 is not a station code"):
        load_atlas_bank(tmp_path, 4.0, 8.0)
