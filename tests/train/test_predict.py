import csv

import numpy as np
import pytest

from cache.stations import stage_scans
from train.__main__ import main
from train.predict import RepredictError


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """Two folds of a TS1 run on the tiny cohort, trained one epoch each."""
    from tests.train.conftest import write_tiny_cohort

    root = tmp_path_factory.mktemp("tiny")
    config = write_tiny_cohort(root)
    runs = root / "runs"
    for fold in ("0", "1"):
        assert main(["ts1", "--dataset", str(config), "--runs-dir", str(runs), "--fold", fold,
                     "--max-epochs", "1"]) == 0
    return runs / "tiny" / "ts1"


def test_predict_reproduces_the_stored_predictions_bit_for_bit(trained_run, tmp_path):
    assert main(["predict", "--run", str(trained_run), "--out", str(tmp_path / "again")]) == 0
    for fold in ("fold0", "fold1"):
        for split in ("val", "test"):
            name = f"predictions_{split}.csv"
            assert (tmp_path / "again" / fold / name).read_bytes() == (trained_run / fold / name).read_bytes()


def test_rule_set_restages_ts1_without_retraining(trained_run, tmp_path):
    assert main(["predict", "--run", str(trained_run), "--rule-set", "tnm8", "--folds", "0"]) == 0
    out = trained_run.with_name("ts1-tnm8")
    assert not (out / "fold1").exists()
    stored, restaged = read_rows(trained_run / "fold0" / "predictions_test.csv"), read_rows(
        out / "fold0" / "predictions_test.csv")
    assert {r["rule_set"] for r in restaged} == {"tnm8"}
    assert [r["probability"] for r in restaged] == [r["probability"] for r in stored]
    scans = sorted({r["scan_id"] for r in restaged})
    pred = np.array([[max(int(r["station_pred"]), 0) for r in restaged if r["scan_id"] == s] for s in scans])
    sides = tuple(next(r["tumor_side"] for r in restaged if r["scan_id"] == s) or None for s in scans)
    n_pred = [int(next(r["n_pred"] for r in restaged if r["scan_id"] == s)) for s in scans]
    assert n_pred == stage_scans(pred, sides, "tnm8").tolist()


@pytest.mark.parametrize("argv, message", [
    (["--rule-set", "tnm9"], "unknown; available: paper, tnm8"),
    (["--folds", "0,2"], r"no best.pt for fold\(s\) \[2\]"),
    (["--out", "RUN"], "is the run itself"),
])
def test_predict_refuses_bad_options(trained_run, argv, message):
    argv = [str(trained_run) if a == "RUN" else a for a in argv]
    with pytest.raises(RepredictError, match=message):
        main(["predict", "--run", str(trained_run), *argv])
