import csv

import numpy as np
import pytest
import torch

from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import load_dataset
from cache.manifest import read_manifest
from train.__main__ import main
from train.data import open_part
from train.inference import InferenceError, load_trained, predict, write_predictions


def test_trained_model_predicts_every_scan_and_station_and_the_csv_has_17_rows_per_scan(tiny_dataset, tmp_path):
    assert main(["ts1", "--dataset", str(tiny_dataset), "--runs-dir", str(tmp_path), "--max-epochs", "1"]) == 0
    model, settings = load_trained(tmp_path / "tiny" / "ts1" / "fold0")
    config = load_dataset(str(tiny_dataset))
    rows = list(read_manifest(config.manifest_path, config.root, check_files=False).rows)
    part = open_part(config, rows, ("P00", "P06", "P11"), expected_settings(build_settings_for(str(tiny_dataset))))
    centroid = predict(model, part, settings, torch.device("cpu"))
    again = predict(model, part, settings, torch.device("cpu")).station_prob
    assert np.array_equal(centroid.station_prob, again, equal_nan=True)
    assert np.isnan(centroid.station_prob[:, 0]).all()  # 1L is absent from the tiny scans
    assert (~np.isnan(centroid.station_prob)).sum() == 3 * 4
    averaged = predict(model, part, settings, torch.device("cpu"), samples=3, seed=1)
    present = ~np.isnan(averaged.station_prob)
    assert (averaged.station_prob[present] >= 0).all() and (averaged.station_prob[present] <= 1).all()
    assert not np.array_equal(averaged.station_prob[present], centroid.station_prob[present])
    write_predictions(tmp_path / "p.csv", part, centroid, fold=0, split="test", stage="ts1")
    with open(tmp_path / "p.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 3 * 17
    p11 = [r for r in table if r["patient_id"] == "P11"]
    assert {r["tumor_side"] for r in p11} == {""} and {r["n_true"] for r in p11} == {"0"}
    assert {r["station_pred"] for r in table if r["station"] == "1L"} == {"-1"}


def test_nan_outputs_are_an_error_not_absent_stations_or_n0(tiny_dataset, tmp_path):
    """A model with NaN weights (a damaged checkpoint) used to mark every station absent and print N0."""
    assert main(["ts1", "--dataset", str(tiny_dataset), "--runs-dir", str(tmp_path), "--max-epochs", "1"]) == 0
    model, settings = load_trained(tmp_path / "tiny" / "ts1" / "fold0")
    with torch.no_grad():
        next(model.parameters()).fill_(float("nan"))
    config = load_dataset(str(tiny_dataset))
    rows = list(read_manifest(config.manifest_path, config.root, check_files=False).rows)
    part = open_part(config, rows, ("P00", "P06"), expected_settings(build_settings_for(str(tiny_dataset))))
    with pytest.raises(InferenceError, match=r"8 station logits are NaN or infinite \(scans P00/.*P06/"):
        predict(model, part, settings, torch.device("cpu"))
