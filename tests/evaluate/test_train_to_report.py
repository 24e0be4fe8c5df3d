"""The train -> evaluate contract on real files: TS1 trained on every fold of a tiny cohort, then the report."""

import csv

from evaluate.__main__ import main as evaluate_main
from tests.train.conftest import LABELS, write_tiny_cohort
from train.__main__ import main as train_main


def test_report_of_a_trained_run(tmp_path):
    (tmp_path / "data").mkdir()
    config = write_tiny_cohort(tmp_path / "data")
    runs = tmp_path / "runs"
    for fold in range(3):
        assert train_main(["ts1", "--dataset", str(config), "--fold", str(fold), "--runs-dir", str(runs)]) == 0
    out = tmp_path / "report"
    assert evaluate_main(["--dataset", str(config), "--run", str(runs / "tiny" / "ts1"), "--out", str(out),
                          "--n-qa-scans", "1", "--n-permutations", "200"]) == 0
    rows = list(csv.DictReader(open(out / "methods.csv")))
    pooled = {(r["method"].split(" ")[0], r["level"], r["metric"]): r for r in rows if r["fold"] == "pooled"}
    # every scan is a test scan once; one has an unknown side, and every station with a label is scored
    assert int(pooled[("TS1", "station", "accuracy")]["n"]) == len(LABELS) * 17
    assert int(pooled[("Thresholding", "station", "accuracy")]["n"]) == len(LABELS) * 17
    # malignant cubes glow at SUV 8 over 0.5 ml, benign ones stay below 1.5: the built-in segmenter finds exactly
    # the malignant ones (the tiny cohort's SUVmax attributes are constant, so thresholding cannot)
    assert float(pooled[("Lesion", "station", "balanced_accuracy")]["value"]) == 1.0
    assert "TS1 vs Thresholding" in (out / "report.md").read_text()
