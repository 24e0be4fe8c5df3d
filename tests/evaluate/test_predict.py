"""Pieces of `predict` that need no trained model: staging for an unknown side, the table, refusals."""

import math

import pytest

from cache.settings import SettingsError
from cache.stations import status_vector
from evaluate.__main__ import main
from evaluate.predict import (
    PredictError,
    ScanPrediction,
    StationPrediction,
    n_stage_text,
    stage_both_sides,
    station_table_text,
)


def test_unknown_side_gives_both_stages():
    assert stage_both_sides(status_vector(["4L"]), None, "paper") == (None, {"R": 3, "L": 2})
    assert stage_both_sides(status_vector(["7"]), None, "paper") == (2, {"R": 2, "L": 2})
    assert stage_both_sides(status_vector(["4L"]), "L", "paper")[0] == 2


def test_table_and_stage_text():
    stations = (StationPrediction("4R", 0.81, True, 5.2, 3.4), StationPrediction("7", float("nan"), False,
                                                                                 float("nan"), float("nan")))
    prediction = ScanPrediction(None, {"R": 2, "L": 3}, None, "paper", stations, {})
    table = station_table_text(prediction)
    assert "4R        0.810  MALIGNANT    5.20" in table and "absent" in table.splitlines()[2]
    assert "N2 if right, N3 if left" in n_stage_text(prediction)
    assert math.isnan(stations[1].probability)


def test_predict_refuses_missing_inputs(tmp_path):
    with pytest.raises(SettingsError, match="--ct, --pet and --model are required"):
        main(["predict"])
    with pytest.raises(PredictError, match="--pet .*no such file"):
        main(["predict", "--ct", str(tmp_path), "--pet", str(tmp_path / "nope"), "--totalseg", str(tmp_path),
              "--model", str(tmp_path), "--out", str(tmp_path / "out")])
