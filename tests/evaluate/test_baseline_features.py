"""Baseline features read from real (tiny) cache files, and both baselines over folds of a small cohort."""

import numpy as np
import pytest

from cache.reader import open_scan
from cache.stations import station
from evaluate.baselines.features import lesion_sources, scan_features
from evaluate.baselines.lesion_overlap import overlap_method
from evaluate.baselines.thresholding import thresholding_method
from evaluate.comparison import EvaluationCohort
from tests.evaluate.tiny_cache import SHAPE, write_tiny_scan


def test_features_read_suvmax_and_segment_lesions(tmp_path):
    path = write_tiny_scan(tmp_path, "p0", {"7": 6.0}, ("7",), n_clinical=2)
    with open_scan(path) as scan:
        features = scan_features(scan, ("builtin",), 2.5, 0.05)
    assert features.suv_max[station("7").index] == pytest.approx(6.0)
    assert features.suv_max[station("4R").index] == pytest.approx(1.0)
    assert np.isnan(features.suv_max[station("10R").index])  # not mapped in this scan
    assert features.n_lesions == {"builtin": 1}
    assert features.lesion_overlap["builtin"][station("7").index] == pytest.approx(1.0)


def test_features_from_the_cache_lesion_mask_and_the_builtin_segmenter(tmp_path):
    lesions = np.zeros(SHAPE, dtype=np.uint8)
    lesions[0:2, 0:2, 3:5] = 1  # half in 4R (x 3), half in 7 (x 4): a tie goes to the lower code (4R)
    path = write_tiny_scan(tmp_path, "p0", {"7": 6.0}, ("7",), n_clinical=2, lesions=lesions)
    assert lesion_sources("auto", [path]) == ("cache",)
    assert lesion_sources("both", [path]) == ("cache", "builtin")
    with open_scan(path) as scan:
        features = scan_features(scan, ("cache", "builtin"), 2.5, 0.05)
    assert features.n_lesions == {"cache": 1, "builtin": 1}
    assert features.lesion_overlap["cache"][station("4R").index] == pytest.approx(0.5)
    assert features.lesion_overlap["cache"][station("7").index] == 0.0
    assert features.lesion_overlap["builtin"][station("7").index] == pytest.approx(1.0)


def test_lesion_sources_without_cache_masks(tmp_path):
    with_mask = write_tiny_scan(tmp_path, "p0", {}, (), lesions=np.zeros(SHAPE, dtype=np.uint8))
    without = write_tiny_scan(tmp_path, "p1", {}, ())
    assert lesion_sources("auto", [with_mask, without]) == ("builtin",)
    with pytest.raises(ValueError, match="lesion-source builtin"):
        lesion_sources("cache", [with_mask, without])
    with open_scan(without) as scan, pytest.raises(ValueError, match="no /lesions mask"):
        scan_features(scan, ("cache",), 2.5, 0.2)


def _cohort(n: int = 6) -> tuple[EvaluationCohort, np.ndarray]:
    """Station 7 malignant in even scans at SUVmax 5; benign 4R at SUVmax 3.2 in every scan."""
    station_true = np.zeros((n, 17), dtype=np.int8)
    suv_max = np.full((n, 17), np.nan)
    suv_max[:, station("4R").index] = 3.2
    suv_max[:, station("7").index] = 1.0
    station_true[::2, station("7").index] = 1
    suv_max[::2, station("7").index] = 5.0
    n_true = np.where(np.arange(n) % 2 == 0, 2, 0)
    return EvaluationCohort(tuple(f"p{i}" for i in range(n)), tuple("s0" for _ in range(n)), ("R",) * n, station_true,
                            n_true, np.arange(n) % 3), suv_max


def test_thresholding_over_folds_learns_on_training_scans_only():
    cohort, suv_max = _cohort()
    method = thresholding_method(cohort, suv_max, (2.5, 3.5, 5.5), "paper")
    # any t in [3.2, 5) separates; 3.5 is the only candidate there
    assert method.name == "Thresholding (t = 3.5)"
    assert method.notes["SUV threshold"] == "fold 0: 3.5, fold 1: 3.5, fold 2: 3.5"
    assert method.station_pred.tolist() == np.clip(cohort.station_true, 0, 1).tolist()
    assert method.n_pred.tolist() == cohort.n_true.tolist()
    assert method.station_score[0, station("10R").index] == 0.0
    fixed = thresholding_method(cohort, suv_max, (2.5,), "paper", fixed=2.5)
    assert fixed.station_pred[:, station("4R").index].all() and (fixed.n_pred == 2).all()


def test_overlap_method_applies_o_per_fold():
    cohort, _ = _cohort()
    overlap = np.zeros((6, 17))
    overlap[::2, station("7").index] = 0.15
    overlap[1::2, station("4R").index] = 0.07
    method = overlap_method(cohort, overlap, (0.05, 0.1, 0.2), "paper", "builtin")
    assert method.name == "Lesion overlap, builtin (o = 0.1)"
    assert method.station_pred.tolist() == np.clip(cohort.station_true, 0, 1).tolist()


def test_load_evaluation_cohort_reads_truth_and_features_of_test_patients(tmp_path):
    from cache.reader import CacheError, cache_files
    from evaluate.cohort import load_evaluation_cohort
    from evaluate.settings import EvaluateSettings

    write_tiny_scan(tmp_path, "p0", {"7": 6.0}, ("7",), tumor_side="R", n_clinical=2)
    write_tiny_scan(tmp_path, "p1", {}, (), tumor_side=None, n_clinical=0)
    write_tiny_scan(tmp_path, "p2", {}, (), n_clinical=0)  # not a test patient of the chosen folds
    data = load_evaluation_cohort(cache_files(tmp_path), {"p0": 0, "p1": 1}, "cN", EvaluateSettings())
    assert data.cohort.patient_ids == ("p0", "p1")
    assert data.cohort.fold.tolist() == [0, 1] and data.cohort.n_true.tolist() == [2, 0]
    assert data.cohort.tumor_sides == ("R", None)
    assert data.cohort.station_true[0, station("7").index] == 1
    assert data.suv_max[0, station("7").index] == pytest.approx(6.0)
    assert list(data.lesion_overlap) == ["builtin"] and data.n_lesions["builtin"].tolist() == [0, 0]
    pathological = load_evaluation_cohort(cache_files(tmp_path), {"p0": 0}, "pN", EvaluateSettings())
    assert pathological.cohort.n_true.tolist() == [-1] and (pathological.cohort.station_true == -1).all()
    with pytest.raises(CacheError, match="no cache file for test patient.*p9"):
        load_evaluation_cohort(cache_files(tmp_path), {"p9": 0}, "cN", EvaluateSettings())
