"""Report tables and figures: the numbers written are the numbers computed."""

import csv
import dataclasses

import numpy as np

from cache.grid import Grid
from cache.stations import station
from evaluate.comparison import EvaluationCohort, MethodPredictions, compare_methods, evaluate_method
from evaluate.figures import confusion_figure, qa_overlay_figure
from evaluate.paper_claims import claims_section, paper_claims
from evaluate.report import (
    methods_table_markdown,
    paired_tests_markdown,
    per_fold_markdown,
    write_methods_csv,
    write_paired_tests_csv,
)


def _results():
    rng = np.random.default_rng(0)
    station_true = (rng.random((10, 17)) < 0.2).astype(np.int8)
    cohort = EvaluationCohort(tuple(f"p{i}" for i in range(10)), tuple(f"s{i}" for i in range(10)), ("R",) * 10,
                              station_true, rng.integers(0, 4, 10), np.repeat(np.arange(5), 2))
    noisy = np.where(rng.random((10, 17)) < 0.1, 1 - station_true, station_true).astype(np.int8)
    a = MethodPredictions("TS1", noisy, rng.random((10, 17)), cohort.n_true.copy())
    b = MethodPredictions("Thresholding", np.ones((10, 17), np.int8), np.full((10, 17), np.nan), np.full(10, 3))
    results = [evaluate_method(cohort, a), evaluate_method(cohort, b)]
    return results, [compare_methods(cohort, a, b, rng)]


def test_methods_table_has_one_row_per_method_with_mean_and_sd():
    results, tests = _results()
    table = methods_table_markdown(results)
    lines = table.splitlines()
    assert lines[0].startswith("| Method | LNS Acc. | LNS Bal. Acc. |") and len(lines) == 4
    ts1 = results[0].station_summary
    assert f"{ts1.mean['accuracy']:.2f} ± {ts1.sd['accuracy']:.2f}" in lines[2]
    assert "| n/a |" in lines[3]  # thresholding has no probabilities: AUC n/a
    pooled = methods_table_markdown(results, pooled=True)
    interval = results[0].station_interval["accuracy"]
    assert interval.low <= results[0].station_pooled.accuracy <= interval.high
    assert f"{results[0].station_pooled.accuracy:.2f} {interval.format()}" in pooled.splitlines()[2]
    assert "TS1 vs Thresholding" in paired_tests_markdown(tests)
    # 10 patients: the clustered p cannot go below 2 / 2**10, however many stations McNemar counts
    assert f"| {2 / 2**10:.3g} (exact, 10 patients) |" in paired_tests_markdown(tests)
    assert "| N-stage clustered p | scans (patients) |" in paired_tests_markdown(tests).splitlines()[0]
    assert per_fold_markdown(results[0]).count("\n") == 6  # header, rule, 5 folds


def test_csv_round_trips_the_values(tmp_path):
    results, tests = _results()
    write_methods_csv(results, tmp_path / "methods.csv")
    rows = list(csv.DictReader(open(tmp_path / "methods.csv")))
    pooled = [r for r in rows if r["method"] == "TS1" and r["fold"] == "pooled" and r["metric"] == "specificity"
              and r["level"] == "station"]
    assert float(pooled[0]["value"]) == results[0].station_pooled.specificity
    fold3 = [r for r in rows if r["method"] == "TS1" and r["fold"] == "3" and r["metric"] == "accuracy"
             and r["level"] == "n_stage"]
    assert float(fold3[0]["value"]) == results[0].n_stage_per_fold[3].accuracy
    write_paired_tests_csv(tests, tmp_path / "tests.csv")
    row = next(csv.DictReader(open(tmp_path / "tests.csv")))
    assert float(row["mcnemar_p"]) == tests[0].mcnemar.p_value
    assert float(row["clustered_p"]) == tests[0].clustered.p_value and row["n_patients"] == "10"
    low = next(r for r in rows if r["method"] == "TS1" and r["fold"] == "pooled_low" and r["metric"] == "auc")
    assert float(low["value"]) == results[0].station_interval["auc"].low
    undefined = next(r for r in rows if r["method"] == "TS1" and r["fold"] == "pooled_undefined"
                     and r["metric"] == "sensitivity" and r["level"] == "n_stage")
    assert int(undefined["value"]) == results[0].n_stage_interval["sensitivity"].n_undefined
    assert row["n_scans"] == row["n_scan_patients"] == "10"


def test_figures_are_written(tmp_path):
    results, _ = _results()
    path = confusion_figure([r.name for r in results], [r.station_confusion for r in results],
                            [r.n_stage_confusion for r in results], tmp_path / "confusion.png")
    assert path.stat().st_size > 1000
    labels = np.zeros((6, 20, 20), dtype=np.uint8)
    labels[1:4, 5:10, 5:10] = station("4R").code
    labels[2:5, 12:16, 12:16] = station("7").code
    status = np.zeros(17, dtype=np.int8)
    status[station("7").index] = 1
    ct = np.zeros(labels.shape, dtype=np.int16)
    qa = qa_overlay_figure(ct, np.ones(labels.shape), labels, status, "p0 / s0", tmp_path / "qa.png",
                           Grid(labels.shape, (1.0, 1.0, 2.0), (0.0, 0.0, 0.0)), probability=np.full(17, 0.7))
    assert qa.stat().st_size > 1000


def test_claims_compare_means_over_folds_and_find_the_baseline_by_its_registry_key():
    results, tests = _results()
    ts1, thresholding = results[0], dataclasses.replace(results[1], name="SUV rule", baseline="thresholding")
    test = dataclasses.replace(tests[0], method_b="SUV rule")
    claims = paper_claims({"TS1": ts1, "SUV rule": thresholding}, {("TS1", "SUV rule"): test})
    by_statement = {c.statement: c for c in claims}
    accuracy = by_statement["TS1 classifies stations more accurately than thresholding"]
    mean_ts1, mean_t = ts1.station_summary.mean["accuracy"], thresholding.station_summary.mean["accuracy"]
    assert accuracy.here == f"TS1 {mean_ts1:.3f} vs SUV rule {mean_t:.3f}" and accuracy.holds is True
    assert by_statement["TS1 is more specific than thresholding (thresholding is oversensitive)"].holds is True
    assert f"McNemar p = {test.mcnemar.p_value:.3g}" in claims_section(claims)
    assert len(claims) == 6  # no TS2/TS3 or ablation rows here: those claims are left out, not failed
    # a method merely named like a baseline is not one: only the registry key counts
    named_only = dataclasses.replace(results[1], name="Thresholding (t = 3)")
    assert paper_claims({"TS1": ts1, named_only.name: named_only}, {}) == []


def test_the_ts2_claim_leaves_lesion_masks_given_with_the_data_out_of_the_other_methods():
    results, tests = _results()
    ts1, thresholding = results
    weaker = dataclasses.replace(ts1, n_stage_summary=dataclasses.replace(
        ts1.n_stage_summary, mean={**ts1.n_stage_summary.mean, "accuracy": 0.4}))
    ts2 = dataclasses.replace(ts1, name="TS2", n_stage_summary=dataclasses.replace(
        ts1.n_stage_summary, mean={**ts1.n_stage_summary.mean, "accuracy": 0.6}))
    given = dataclasses.replace(ts1, name="Lesion overlap, manifest lesion masks (o = 0.05)", baseline="lesion_overlap")
    built_in = dataclasses.replace(weaker, name="Lesion overlap, built-in PET segmenter (o = 0.05)",
                                   baseline="lesion_overlap")
    methods = {"TS1": weaker, "TS2": ts2, "TS3": dataclasses.replace(weaker, name="TS3"), given.name: given,
               built_in.name: built_in}
    pairs = {("TS3", "TS1"): tests[0], **{("TS1", name): tests[0] for name in (given.name, built_in.name)}}
    claim = next(c for c in paper_claims(methods, pairs) if c.statement.startswith("TS2 has the highest"))
    assert claim.holds is True and claim.here == "TS2 0.600 vs best other 0.400"
