"""Batch predict without a model: which scans an input names, refusals, and the summary of ok and failed scans."""

import csv
import math

import pytest

from cache.manifest import write_manifest
from cache.stations import station_names
from evaluate.batch_predict import BatchInputError, ScanOutcome, input_rows, write_summary
from evaluate.predict import ScanPrediction, StationPrediction, qa_flags


def test_a_folder_names_each_subfolder_with_a_ct_and_a_pet(tmp_path):
    for name, files in (("a", ("ct.nii.gz", "pet.nii.gz", "totalseg.nii.gz")), ("b", ("ct.nii.gz",)),
                        ("c", ("ct.nii.gz", "pet_dicom"))):
        (tmp_path / name).mkdir()
        for f in files:
            (tmp_path / name / f).mkdir() if "." not in f else (tmp_path / name / f).write_text("")
    rows = input_rows(tmp_path)
    assert [r.scan_id for r in rows] == ["a", "c"]
    assert rows[0].totalseg == (tmp_path / "a" / "totalseg.nii.gz").resolve() and rows[1].totalseg is None
    assert rows[1].pet.name == "pet_dicom" and rows[1].tumor_side is None


def test_a_manifest_names_its_rows_and_bad_inputs_are_refused(tmp_path):
    write_manifest(tmp_path / "m.csv", [{"patient_id": "P1", "scan_id": "S1", "ct": "x/ct.nii.gz",
                                         "pet": "x/pet.nii.gz", "tumor_side": "L"}])
    (row,) = input_rows(tmp_path / "m.csv")
    assert row.key == "P1__S1" and row.ct == tmp_path / "x" / "ct.nii.gz" and row.tumor_side == "L"
    with pytest.raises(BatchInputError, match="no such manifest or folder"):
        input_rows(tmp_path / "nope.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(BatchInputError, match="no subfolder holds a CT"):
        input_rows(tmp_path / "empty")


def test_summary_has_a_row_per_scan_with_status_probabilities_and_flags(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ct.nii.gz").write_text("")
    (tmp_path / "a" / "pet.nii.gz").write_text("")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "ct.nii.gz").write_text("")
    (tmp_path / "b" / "pet.nii.gz").write_text("")
    a, b = input_rows(tmp_path)
    stations = tuple(StationPrediction(n, 0.8 if n == "7" else math.nan, n == "7", 5.0, 2.0, 0.1)
                     for n in station_names())
    prediction = ScanPrediction(None, {"R": 2, "L": 2}, None, "paper", stations, {}, 5,
                                {"dice_min": 0.55, "folding_max": 0.0})
    write_summary(tmp_path / "s.csv", [ScanOutcome(a, prediction, 12.0), ScanOutcome(b, None, 1.0, "ValueError: x")])
    with open(tmp_path / "s.csv", newline="") as f:
        ok, failed = list(csv.DictReader(f))
    assert ok["status"] == "ok" and ok["n_stage"] == "" and ok["n_stage_if_R"] == "2" and ok["folds"] == "5"
    assert ok["p_7"] == "0.800000" and ok["sd_7"] == "0.100000" and ok["p_4R"] == "" and ok["positive"] == "7"
    assert ok["qa_flags"] == "low_dice" and ok["qa_dice_min"] == "0.5500"
    assert failed["status"] == "failed" and failed["error"] == "ValueError: x" and failed["p_7"] == ""
    assert qa_flags({"dice_min": 0.9, "folding_max": 0.01}) == "folding"


def test_short_input_and_output_flags_as_nnunet_users_type_them():
    from evaluate.__main__ import BATCH

    (settings,), _ = BATCH.parse_all(["-i", "scans", "-o", "out", "--model", "runs/demo/ts1"])
    assert (settings.input, settings.out, settings.model) == ("scans", "out", "runs/demo/ts1")
