"""`python -m evaluate` on a tiny real cohort: cache files, a run with predictions files, the report folder."""

import csv

import numpy as np
import pytest

from cache.settings import SettingsError
from cache.stations import station, station_names
from evaluate.__main__ import main
from evaluate.evaluation import EvaluationError, parse_folds
from evaluate.model_predictions import RunPredictionsError
from tests.evaluate.tiny_cache import write_tiny_scan

COLUMNS = ["patient_id", "scan_id", "fold", "split", "stage", "station", "station_index", "station_true",
           "probability", "station_pred", "tumor_side", "n_true", "n_pred", "n_prob_0", "n_prob_1", "n_prob_2",
           "n_prob_3", "rule_set"]


def _dataset(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(f'root = "{tmp_path / "data"}"\nmanifest = "manifest.csv"\ncache_root = "cache"\n')
    return config


def _write_predictions(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        writer.writerows(rows)


def _cohort(tmp_path, n=6):
    """Even patients: station 7 malignant (N2) and hot; odd: benign, with a warm (3.2) benign 4R."""
    cache = tmp_path / "data" / "cache" / "tiny"
    run = tmp_path / "runs" / "tiny" / "ts1"
    rows_per_fold = {0: [], 1: [], 2: []}
    for i in range(n):
        malignant = i % 2 == 0
        write_tiny_scan(cache, f"p{i}", {"7": 6.0} if malignant else {"4R": 3.2}, ("7",) if malignant else (),
                        tumor_side="R", n_clinical=2 if malignant else 0)
        for s, name in enumerate(station_names()):
            present = name in ("4R", "7")
            truth = int(malignant and name == "7")
            probability = (0.9 if truth else 0.2) if present else None
            if i == 1 and name == "4R":
                probability = 0.6  # one false positive: p1 staged N2
            pred = -1 if probability is None else int(probability >= 0.5)
            n_pred = 2 if (malignant or i == 1) else 0
            rows_per_fold[i % 3].append([f"p{i}", "s0", i % 3, "test", "ts1", name, s, truth,
                                         "" if probability is None else probability, pred, "R",
                                         2 if malignant else 0, n_pred, "", "", "", "", "paper"])
    for fold, rows in rows_per_fold.items():
        _write_predictions(run / f"fold{fold}" / "predictions_test.csv", rows)
    return run


def test_report_compares_the_model_with_both_baselines(tmp_path, capsys):
    config = _dataset(tmp_path)
    run = _cohort(tmp_path)
    out = tmp_path / "report"
    assert main(["--dataset", str(config), "--run", str(run), "--out", str(out), "--n-qa-scans", "1"]) == 0
    report = (out / "report.md").read_text()
    assert "| TS1 |" in report and "Thresholding (t = 3.5)" in report
    assert "Lesion overlap, built-in PET segmenter" in report
    rows = list(csv.DictReader(open(out / "methods.csv")))

    def value(method_prefix, level, metric, fold="pooled"):
        (row,) = [r for r in rows if r["method"].startswith(method_prefix) and r["level"] == level
                  and r["metric"] == metric and r["fold"] == fold]
        return float(row["value"])

    # TS1: 3 true positives, one false positive among 9 benign stations present (12 stations with known labels
    # per fold... stations absent from the cache are benign by every method and count as true negatives)
    assert value("TS1", "station", "sensitivity") == 1.0
    assert value("TS1", "station", "specificity") == pytest.approx(1 - 1 / (6 * 17 - 3))
    assert value("TS1", "n_stage", "accuracy") == pytest.approx(5 / 6)
    assert value("Thresholding", "station", "accuracy") == 1.0
    assert (out / "confusion.png").stat().st_size > 1000
    assert len(list(out.glob("qa_*.png"))) == 1
    tests = list(csv.DictReader(open(out / "paired_tests.csv")))
    assert [(t["method_a"], t["method_b"][:12]) for t in tests] == [("TS1", "Thresholding"), ("TS1", "Lesion overl")]
    assert int(tests[0]["mcnemar_only_b"]) == 1  # the one false positive of TS1
    # the claims section is evaluate.paper_claims': means over folds, the baselines found by their registry key
    claims = report.split("## Which of the paper's claims hold on this run")[1].split("\n## ")[0]
    assert (f"| Table 4 | TS1 classifies stations more accurately than thresholding | 0.88 vs 0.83 | TS1 "
            f"{value('TS1', 'station', 'accuracy', 'mean'):.3f} vs Thresholding (t = 3.5) "
            f"{value('Thresholding', 'station', 'accuracy', 'mean'):.3f} | **does not hold** |") in claims
    assert "differ significantly from Lesion overlap, built-in PET segmenter" in claims
    assert "| TS1 |" in capsys.readouterr().out


def test_report_of_chosen_folds_only(tmp_path):
    config = _dataset(tmp_path)
    run = _cohort(tmp_path)
    out = tmp_path / "report"
    main(["--dataset", str(config), "--run", str(run), "--out", str(out), "--folds", "1", "--n-qa-scans", "0"])
    rows = list(csv.DictReader(open(out / "methods.csv")))
    assert {r["fold"] for r in rows} == {"1", "mean", "sd", "pooled", "pooled_low", "pooled_high", "pooled_undefined"}
    pooled = [r for r in rows if r["fold"] == "pooled" and r["level"] == "n_stage" and r["metric"] == "accuracy"]
    assert all(int(r["n"]) == 2 for r in pooled)  # p1 and p4


def test_folds_parse_and_refuse_unknown():
    assert parse_folds("0-2,4", (0, 1, 2, 3, 4)) == (0, 1, 2, 4)
    assert parse_folds("", (2, 0)) == (0, 2)
    with pytest.raises(EvaluationError, match="have no trained run"):
        parse_folds("0-5", (0, 1, 2, 3, 4))
    with pytest.raises(EvaluationError, match="expected e.g."):
        parse_folds("a", (0,))


def test_run_without_predictions_is_refused(tmp_path):
    config = _dataset(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunPredictionsError, match="python -m train ts1"):
        main(["--dataset", str(config), "--run", str(tmp_path / "empty")])
    with pytest.raises(SettingsError, match="--run is required"):
        main(["--dataset", str(config)])


def test_predictions_with_other_labels_are_refused(tmp_path):
    config = _dataset(tmp_path)
    run = _cohort(tmp_path)
    path = run / "fold0" / "predictions_test.csv"
    text = path.read_text().splitlines()
    header, first = text[0], text[1].split(",")
    first[COLUMNS.index("station_true")] = "1"
    path.write_text("\n".join([header, ",".join(first), *text[2:]]) + "\n")
    with pytest.raises(RunPredictionsError, match="station labels of p0/s0 differ"):
        main(["--dataset", str(config), "--run", str(run), "--out", str(tmp_path / "r")])
    assert station("7").index == 10 and np.int8


def _write_fold_file(run, n=6):
    from train.folds import Fold, write_fold_file

    folds = [Fold(k, (), (), tuple(f"p{i}" for i in range(n) if i % 3 == k)) for k in range(3)]
    labels = {f"p{i}": (2 if i % 2 == 0 else 0, 1 if i % 2 == 0 else 0) for i in range(n)}
    write_fold_file(run.parent / "folds_cN.json", folds, {p: "s" for p in labels}, labels, "cN", 0.2, 0)


def test_a_run_with_some_folds_uses_the_fold_file_for_the_baselines(tmp_path):
    import shutil

    config = _dataset(tmp_path)
    run = _cohort(tmp_path)
    _write_fold_file(run)
    shutil.rmtree(run / "fold1")
    shutil.rmtree(run / "fold2")
    out = tmp_path / "report"
    assert main(["--dataset", str(config), "--run", str(run), "--out", str(out), "--n-qa-scans", "0"]) == 0
    report = (out / "report.md").read_text()
    assert "folds 0)" in report and "SUV threshold: fold 0: 3.5" in report


def test_a_run_on_another_split_is_refused(tmp_path):
    config = _dataset(tmp_path)
    run = _cohort(tmp_path)
    _write_fold_file(run)
    (run / "fold0" / "predictions_test.csv").rename(run / "fold0" / "moved.csv")
    (run / "fold1" / "predictions_test.csv").rename(run / "fold0" / "predictions_test.csv")
    with pytest.raises(RunPredictionsError, match="test patients differ from fold 0"):
        main(["--dataset", str(config), "--run", str(run), "--out", str(tmp_path / "r")])
