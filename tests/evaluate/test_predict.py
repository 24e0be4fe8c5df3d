"""Pieces of `predict` that need no trained model: staging for an unknown side, the table, the NIfTI mask."""

import math

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from cache.settings import SettingsError
from cache.stations import station
from evaluate.__main__ import main
from evaluate.predict import (
    PredictError,
    ScanPrediction,
    StationPrediction,
    n_stage_text,
    stage_both_sides,
    station_table_text,
    write_station_mask,
)


def test_unknown_side_gives_both_stages():
    assert stage_both_sides(["4L"], None, "paper") == (None, {"R": 3, "L": 2})
    assert stage_both_sides(["7"], None, "paper") == (2, {"R": 2, "L": 2})
    assert stage_both_sides(["4L"], "L", "paper")[0] == 2


def test_table_and_stage_text():
    stations = (StationPrediction("4R", 0.81, True, 5.2, 3.4), StationPrediction("7", float("nan"), False,
                                                                                 float("nan"), float("nan")))
    prediction = ScanPrediction(None, {"R": 2, "L": 3}, None, "paper", stations, {})
    table = station_table_text(prediction)
    assert "4R        0.810  MALIGNANT    5.20" in table and "absent" in table.splitlines()[2]
    assert "N2 if right, N3 if left" in n_stage_text(prediction)
    assert math.isnan(stations[1].probability)


def test_station_mask_lands_on_the_original_ct_grid(tmp_path):
    ct = sitk.Image([20, 16, 12], sitk.sitkInt16)  # x, y, z
    ct.SetSpacing((1.0, 1.0, 1.5))
    ct.SetOrigin((-10.0, 5.0, 100.0))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    # a 2 mm cropped grid starting at physical (-6.5, 8.5, 101.5); station 7 fills voxel (z, y, x) = (1, 1, 1)
    grid = Grid((3, 3, 3), (2.0, 2.0, 2.0), (-6.5, 8.5, 101.5))
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 1, 1] = station("7").code
    out = write_station_mask(labels, grid, tmp_path / "ct.nii.gz", tmp_path / "stations.nii.gz")
    image = sitk.ReadImage(str(out))
    assert image.GetSize() == ct.GetSize() and image.GetOrigin() == ct.GetOrigin()
    # the voxel centre (-4.5, 10.5, 103.5) of the station is CT index (5.5, 5.5, 2.33): around x, y 5-6, z 2
    array = sitk.GetArrayFromImage(image)
    assert array[2, 5:7, 5:7].min() == station("7").code
    assert np.count_nonzero(array) == np.count_nonzero(array == station("7").code) > 0


def test_predict_refuses_missing_inputs(tmp_path):
    with pytest.raises(SettingsError, match="--ct, --pet, --totalseg and --model are required"):
        main(["predict"])
    with pytest.raises(PredictError, match="--pet .*no such file"):
        main(["predict", "--ct", str(tmp_path), "--pet", str(tmp_path / "nope"), "--totalseg", str(tmp_path),
              "--model", str(tmp_path)])
