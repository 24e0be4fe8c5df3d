"""Baselines are found by their registry key: every registered one is scored, each variant once, in order."""

import numpy as np
import pytest

from cache.stations import station
from evaluate.baselines.registry import BASELINES, names_of, score_baselines
from evaluate.cohort import CohortData
from evaluate.comparison import EvaluationCohort
from evaluate.settings import EvaluateSettings


def _data(n=6):
    """Station 7 malignant and hot (SUVmax 5, overlapped by a lesion) in even scans."""
    station_true = np.zeros((n, 17), dtype=np.int8)
    station_true[::2, station("7").index] = 1
    suv_max = np.where(station_true == 1, 5.0, 1.0)
    overlap = np.where(station_true == 1, 0.5, 0.0)
    cohort = EvaluationCohort(tuple(f"p{i}" for i in range(n)), ("s0",) * n, ("R",) * n, station_true,
                              np.where(np.arange(n) % 2 == 0, 2, 0), np.arange(n) % 3)
    return CohortData(cohort, (), suv_max, {"cache": overlap, "builtin": overlap}, {})


def test_every_registered_baseline_is_scored_with_its_key_and_found_by_it():
    scored = score_baselines(_data(), EvaluateSettings(), "paper")
    methods = {s.method.name: s.method for s in scored}
    assert [s.method.baseline for s in scored] == ["thresholding", "lesion_overlap", "lesion_overlap"]
    assert list(BASELINES) == ["thresholding", "lesion_overlap"]
    assert names_of(methods, "lesion_overlap") == ["Lesion overlap, manifest lesion masks (o = 0.05)",
                                                   "Lesion overlap, built-in PET segmenter (o = 0.05)"]
    assert names_of(methods) == list(methods)
    assert all(s.seconds >= 0 for s in scored)
    for s in scored:
        assert s.method.n_pred.tolist() == [2, 0, 2, 0, 2, 0]


def test_an_unregistered_key_is_refused_by_name():
    with pytest.raises(KeyError, match="no baseline 'thresholds' registered; registered: thresholding"):
        names_of({}, "thresholds")
