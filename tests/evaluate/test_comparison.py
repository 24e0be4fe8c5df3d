"""Methods compared on folds: per-fold metrics use only that fold's scans; pooled and tests use them all."""

import numpy as np
import pytest

from cache.stations import UNSTAGEABLE
from evaluate.comparison import EvaluationCohort, MethodPredictions, compare_methods, evaluate_method


def _cohort() -> EvaluationCohort:
    station_true = np.zeros((4, 17), dtype=np.int8)
    station_true[0, 7] = station_true[2, 10] = 1
    station_true[3, :] = -1  # an N-stage-only scan
    return EvaluationCohort(patient_ids=("p0", "p1", "p2", "p3"), scan_ids=("s0", "s1", "s2", "s3"),
                            tumor_sides=("R", "R", None, "L"), station_true=station_true,
                            n_true=np.array([2, 0, 2, 1]), fold=np.array([0, 0, 1, 1]))


def _perfect(cohort: EvaluationCohort) -> MethodPredictions:
    pred = np.clip(cohort.station_true, 0, 1).astype(np.int8)
    return MethodPredictions("perfect", pred, pred.astype(float), cohort.n_true.copy())


def test_per_fold_and_pooled_metrics():
    cohort = _cohort()
    method = _perfect(cohort)
    method.station_pred[1, 0] = 1  # one false positive in fold 0
    method.n_pred[2] = UNSTAGEABLE  # scan s2 cannot be staged
    result = evaluate_method(cohort, method)
    assert result.station_per_fold[0].specificity == pytest.approx(32 / 33)
    assert result.station_per_fold[1].n == 17  # the unknown-label scan s3 is left out
    assert result.station_pooled.n == 51 and result.station_pooled.n_positive == 2
    assert result.station_confusion.tolist() == [[48, 1], [0, 2]]
    assert result.unstageable == ("s2",)
    assert result.n_stage_per_fold[1].n == 1  # s3 only
    assert result.n_stage_pooled.n == 3
    assert result.station_summary.n_folds["accuracy"] == 2


def test_compare_methods_pairs_the_same_cases():
    cohort = _cohort()
    good, bad = _perfect(cohort), _perfect(cohort)
    bad.station_pred[:3] = 1 - bad.station_pred[:3]  # wrong on every known station
    bad.n_pred[:] = 3  # no scan is N3
    good.n_pred[2] = UNSTAGEABLE
    tests = compare_methods(cohort, good, bad, np.random.default_rng(0))
    assert (tests.mcnemar.only_a, tests.mcnemar.only_b) == (51, 0)
    assert tests.mcnemar.p_value == pytest.approx(2 * 0.5**51)
    assert tests.n_scans == 3  # s2 is left out: only one method staged it
    assert tests.permutation.difference == pytest.approx(1.0)
    assert tests.permutation.exact and tests.permutation.p_value == pytest.approx(2 / 8)


def test_method_covering_other_scans_is_refused():
    cohort = _cohort()
    method = _perfect(cohort)
    short = MethodPredictions("short", method.station_pred[:2], method.station_score[:2], method.n_pred[:2])
    with pytest.raises(ValueError, match="cover 2 scans"):
        evaluate_method(cohort, short)


def _one_patient_three_scans() -> EvaluationCohort:
    """p0 has three scans (s0-s2), p1 one (s3); station labels unknown so only the N-stage counts."""
    return EvaluationCohort(patient_ids=("p0", "p0", "p0", "p1"), scan_ids=("s0", "s1", "s2", "s3"),
                            tumor_sides=("R",) * 4, station_true=np.full((4, 17), -1, dtype=np.int8),
                            n_true=np.array([1, 1, 1, 2]), fold=np.array([0, 0, 0, 1]))


def test_n_stage_permutation_swaps_all_scans_of_a_patient_together():
    cohort = _one_patient_three_scans()
    good, bad = _perfect(cohort), _perfect(cohort)
    bad.n_pred[:3] = 0  # B misses p0's three scans, and only those
    tests = compare_methods(cohort, good, bad, np.random.default_rng(0))
    assert tests.permutation.difference == pytest.approx(3 / 4)
    # one patient carries the difference: its swap gives +3 or -3, both as extreme (scan by scan: p = 2/8)
    assert tests.permutation.exact and tests.permutation.p_value == 1.0
    assert (tests.n_scans, tests.n_scan_patients) == (4, 2)


def test_bootstrap_resamples_each_dataset_of_a_study_on_its_own():
    # a/p0 staged right, b/p0 staged wrong: each resample draws one patient of each dataset, so the N-stage
    # accuracy is 1/2 in every resample (drawing from the pool would also give 0 and 1)
    cohort = EvaluationCohort(patient_ids=("a/p0", "b/p0"), scan_ids=("s0", "s1"), tumor_sides=("R", "R"),
                              station_true=np.full((2, 17), -1, dtype=np.int8), n_true=np.array([1, 2]),
                              fold=np.array([0, 1]))
    method = _perfect(cohort)
    method.n_pred[1] = 0
    interval = evaluate_method(cohort, method, n_bootstrap=200).n_stage_interval["accuracy"]
    assert (interval.low, interval.high, interval.n_undefined) == (0.5, 0.5, 0)
