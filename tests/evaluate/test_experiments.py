"""The study command on a tiny cohort of real cache files: rows share all but the ablated factor, a stopped study
resumes without retraining, and the report's numbers are those of the stored predictions."""

from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest

from cache.writer import write_scan
from evaluate.__main__ import main
from evaluate.evaluation import EvaluationError
from evaluate.experiment_plan import ExperimentSettings, differing_settings, plan_runs, run_key
from evaluate.experiments import MARKER, STOPPED, plan_study, run_experiments, training_time
from evaluate.timing_table import PREPROCESSING, per_scan, preprocessing_steps, recorded_step_times, totals
from tests.preprocess.synthetic_scan import synthetic_record
from tests.train.conftest import write_tiny_cohort
from train.cross_fit import PARTS_DIR
from train.loop import run_training
from train.settings import TrainSettings

FLAGS = ["--folds", "0-1", "--max-epochs", "1", "--device", "cpu", "--no-progress", "--n-permutations", "200"]


def study_settings(config, runs, **changes) -> ExperimentSettings:
    return ExperimentSettings(dataset=str(config), runs_dir=str(runs), folds="0-1", max_epochs=1, device="cpu",
                              progress=False, n_permutations=200, **changes)


def mtimes(fold_dir, names=("best.pt", "last.pt", MARKER)):
    return {name: (fold_dir / name).stat().st_mtime_ns for name in names}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A study stopped after two fold runs (the second one's completion marker lost), the next fold run trained
    part-way (as a killed trainer leaves it), then the study run again from the command line to the end."""
    root = tmp_path_factory.mktemp("study")
    config = write_tiny_cohort(root)
    settings = study_settings(config, root / "runs")
    assert run_experiments(dataclasses.replace(settings, stop_after_runs=2)) == STOPPED
    plan = plan_study(settings)
    ts1_dirs = [plan.runs["TS1"].run_dir / f"fold{k}" for k in (0, 1)]
    before = [mtimes(d) for d in ts1_dirs]
    (ts1_dirs[1] / MARKER).unlink()  # killed after the trainer finished, before the study marked the run
    centroid = plan.runs["TS1, centroid patch"]
    assert not (centroid.run_dir / "fold0").exists()
    assert run_training(dataclasses.replace(centroid.for_fold(0), stop_after_epoch=1)) == 0
    partial_dir = centroid.run_dir / "fold0"
    partial_metrics = (partial_dir / "metrics.csv").read_text()
    assert not (partial_dir / "predictions_test.csv").exists() and not (partial_dir / MARKER).exists()
    assert main(["experiments", "--dataset", str(config), "--runs-dir", str(root / "runs"), *FLAGS]) == 0
    return {"settings": settings, "plan": plan, "ts1_dirs": ts1_dirs, "before": before, "partial_dir": partial_dir,
            "partial_metrics": partial_metrics, "out": root / "runs" / "tiny" / "experiments"}


def test_rows_that_differ_only_in_the_ablated_factor_share_every_other_setting(study):
    runs = study["plan"].runs
    assert differing_settings(runs["TS1"].settings, runs["TS1, centroid patch"].settings) == {
        "train_patch_sampling": ("weight_map", "centroid")}
    assert differing_settings(runs["TS2"].settings, runs["TS2, no pseudo-labels"].settings) == {
        "lambda_pseudo": (0.02, 0.0)}
    assert len({p.key for p in runs.values()}) == len(runs)
    for fold in (0, 1):
        # TS3 starts from TS1's checkpoint, both TS2 rows from TS3's; every row tested the same patients
        assert runs["TS3"].for_fold(fold).init_from == str(runs["TS1"].run_dir / f"fold{fold}" / "best.pt")
        for ts2 in ("TS2", "TS2, no pseudo-labels"):
            assert runs[ts2].for_fold(fold).init_from == str(runs["TS3"].run_dir / f"fold{fold}" / "best.pt")
        tested = set()
        for planned in runs.values():
            fold_dir = planned.run_dir / f"fold{fold}"
            config = json.loads((fold_dir / "config.json").read_text())["TrainSettings"]
            assert (config["seed"], config["fold_seed"], config["n_folds"]) == (0, 0, 3)
            table = pd.read_csv(fold_dir / "predictions_test.csv", dtype={"patient_id": str})
            tested.add(tuple(sorted(table["patient_id"].unique())))
        assert tested == {tuple(sorted(study["plan"].fold_sets[fold].test))}


def test_the_ablated_factor_changes_the_key_and_a_shared_factor_does_not(tmp_path):
    settings = ExperimentSettings(dataset="demo", runs_dir=str(tmp_path))
    a, b = plan_runs(settings, "data-a"), plan_runs(dataclasses.replace(settings, device="cpu", num_workers=1),
                                                   "data-a")
    assert {n: p.key for n, p in a.items()} == {n: p.key for n, p in b.items()}  # where and how fast: same runs
    c = plan_runs(dataclasses.replace(settings, seed=1), "data-a")
    d = plan_runs(settings, "data-b")
    assert all(a[n].key != c[n].key and a[n].key != d[n].key for n in a)
    assert a["TS3"].parent is a["TS1"] and a["TS2"].parent is a["TS3"] and a["TS2, no pseudo-labels"].parent is a["TS3"]


def test_a_setting_only_ts2_and_ts3_read_keys_their_runs_and_leaves_ts1_runs_valid():
    for stage in ("ts1", "ts2", "ts3"):
        rule, random = (TrainSettings(stage=stage, head_init=init) for init in ("rule", "random"))
        same = run_key(rule, "", "data") == run_key(random, "", "data")
        assert same == (stage == "ts1"), stage
        narrow, wide = (TrainSettings(stage=stage, head_hidden=width, head_init="random") for width in (32, 64))
        assert (run_key(narrow, "", "data") == run_key(wide, "", "data")) == (stage == "ts1"), stage
        in_sample, cross_fitted = (TrainSettings(stage=stage, head_cross_fit=k) for k in (0, 3))
        same = run_key(in_sample, "", "data") == run_key(cross_fitted, "", "data")
        assert same == (stage != "ts3"), stage


def test_a_cross_fitted_ts3_counts_its_part_runs_seconds_and_its_own_epochs(tmp_path):
    def metrics(folder, seconds_per_epoch):
        folder.mkdir(parents=True, exist_ok=True)
        rows = [{"epoch": e, "seconds": seconds_per_epoch} for e in range(3)]
        pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)

    metrics(tmp_path, 1.0)
    for k in (1, 2):
        metrics(tmp_path / PARTS_DIR / f"part{k}of2", 10.0)
    assert training_time(tmp_path) == (63.0, 2)  # epoch 0 of TS3 is its start's validation, not an epoch trained


def test_a_stopped_study_resumes_without_retraining_complete_runs(study):
    fold0, fold1 = study["ts1_dirs"]
    assert mtimes(fold0) == study["before"][0]
    assert mtimes(fold1, ("best.pt", "last.pt")) == {k: study["before"][1][k] for k in ("best.pt", "last.pt")}
    assert (fold1 / MARKER).is_file()
    partial = study["partial_dir"]
    # resumed, not restarted: the first epoch's row (with its measured seconds) is the interrupted run's own
    assert (partial / "metrics.csv").read_text().startswith(study["partial_metrics"].strip())
    assert (partial / MARKER).is_file() and (partial / "predictions_test.csv").is_file()
    with open(study["out"] / "runs.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 10  # five rows on two folds
    reused = {(r["row"], int(r["fold"])) for r in runs if r["reused"] == "True"}
    assert reused == {("TS1", 0), ("TS1", 1)}  # fold 1 marked anew from its finished files, not retrained


def test_a_rerun_reuses_every_run(study):
    before = {n: mtimes(p.run_dir / "fold0") for n, p in study["plan"].runs.items()}
    assert run_experiments(study["settings"]) == 0
    assert {n: mtimes(p.run_dir / "fold0") for n, p in study["plan"].runs.items()} == before
    with open(study["out"] / "runs.csv", newline="") as f:
        assert all(r["reused"] == "True" for r in csv.DictReader(f))


def _methods_csv(out):
    with open(out / "methods.csv", newline="") as f:
        return {(r["method"], r["fold"], r["level"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def _predictions(run_dir):
    return pd.concat([pd.read_csv(run_dir / f"fold{k}" / "predictions_test.csv", dtype={"patient_id": str})
                      for k in (0, 1)], ignore_index=True)


def test_report_numbers_equal_those_recomputed_from_the_stored_predictions(study):
    runs, table, out = study["plan"].runs, _methods_csv(study["out"]), study["out"]
    report = (out / "report.md").read_text()
    for name, planned in runs.items():
        rows = _predictions(planned.run_dir)
        known = rows[rows["station_true"] >= 0]
        correct = known["station_pred"].clip(0, 1) == known["station_true"]
        assert table[(name, "pooled", "station", "accuracy")] == pytest.approx(correct.mean())
        per_fold = [correct[known["fold"] == k].mean() for k in (0, 1)]
        assert table[(name, "mean", "station", "accuracy")] == pytest.approx(np.mean(per_fold))
        assert table[(name, "sd", "station", "accuracy")] == pytest.approx(np.std(per_fold, ddof=1))
        scans = rows.drop_duplicates(["patient_id", "scan_id"])
        staged = scans[(scans["n_true"] >= 0) & (scans["n_pred"] >= 0)]
        assert table[(name, "pooled", "n_stage", "accuracy")] == pytest.approx(
            (staged["n_pred"] == staged["n_true"]).mean())
        if name in ("TS1", "TS2", "TS3"):  # Table 4 rows; the ablation rows appear under their level's name
            assert f"| {name} | {np.mean(per_fold):.2f} ± {np.std(per_fold, ddof=1):.2f} |" in report
    # McNemar of TS1 vs its centroid ablation, from the two runs' stored station predictions
    a, b = _predictions(runs["TS1"].run_dir), _predictions(runs["TS1, centroid patch"].run_dir)
    key = ["patient_id", "scan_id", "station_index"]
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    both = both[both["station_true_a"] >= 0]
    right_a = both["station_pred_a"].clip(0, 1) == both["station_true_a"]
    right_b = both["station_pred_b"].clip(0, 1) == both["station_true_a"]
    only_a, only_b = int((right_a & ~right_b).sum()), int((~right_a & right_b).sum())
    with open(out / "paired_tests.csv", newline="") as f:
        test = next(r for r in csv.DictReader(f) if (r["method_a"], r["method_b"]) == ("TS1", "TS1, centroid patch"))
    assert (int(test["mcnemar_only_a"]), int(test["mcnemar_only_b"])) == (only_a, only_b)
    expected_p = 1.0 if only_a + only_b == 0 else binomtest(only_a, only_a + only_b).pvalue
    assert float(test["mcnemar_p"]) == pytest.approx(expected_p)
    for name in ("report.md", "claims.csv", "timings.csv", "fig9_confusion.png", "ablation_confusion.png"):
        assert (out / name).stat().st_size > 0
    assert "label column **cN**, rule set **paper**" in report and "commit" in report


def test_folds_outside_the_fold_file_are_refused(tmp_path):
    config = write_tiny_cohort(tmp_path)
    with pytest.raises(EvaluationError, match=r"fold\(s\) \[7\]"):
        run_experiments(dataclasses.replace(study_settings(config, tmp_path / "runs"), folds="0,7"))


def test_table7_takes_each_step_from_the_cache_files_records(tmp_path):
    paths = []
    for i, timings in enumerate(({"read_ct": 1.0, "register": 10.0, "total": 11.5},
                                 {"read_ct": 3.0, "register": 20.0, "weight_maps": 2.0, "total": 26.0})):
        record = synthetic_record(f"p{i}", "s0", np.random.default_rng(i), shape_zyx=(24, 24, 24), spacing_mm=4.0)
        paths.append(write_scan(tmp_path / f"p{i}__s0.h5", dataclasses.replace(record, qc={"timings_s": timings})))
    recorded = recorded_step_times(paths)
    assert list(recorded) == ["read_ct", "register", "total", "weight_maps"]
    steps = {s.step: s for s in preprocessing_steps(recorded)}
    assert set(steps) == {"read_ct", "register", "weight_maps"}
    assert steps["register"].mean_s == 15.0 and steps["register"].n_scans == 2
    assert steps["weight_maps"].n_scans == 1
    inference = per_scan("TS1", "inference", 3.0, 10, "timed")
    assert totals([*steps.values(), inference]) == {PREPROCESSING: pytest.approx(2.0 + 15.0 + 2.0),
                                                    "TS1": pytest.approx(19.0 + 0.3)}
