"""One stager: train's TS1 staging, the baselines' and predict's all call `cache.stations.stage_scans`, and agree
with the rule set's groups applied by hand on random station calls and sides."""

import numpy as np
import pytest

from cache.stations import (
    STATION_CUTOFF,
    UNSTAGEABLE,
    StationError,
    load_rule_set,
    stage_scans,
    station_calls,
    station_names,
)
from evaluate.baselines.thresholding import thresholding_method
from evaluate.comparison import EvaluationCohort
from evaluate.predict import stage_both_sides


def by_hand(row: np.ndarray, side: str | None, rule_set: str) -> int:
    """The rule set read as its groups: the highest group holding a malignant station, per side."""
    positive = {name for name, call in zip(station_names(), row, strict=True) if call == 1}
    groups = load_rule_set(rule_set).groups
    stage = {s: max((g for g, group in enumerate(groups[s], start=1) if positive & group), default=0)
             for s in ("R", "L")}
    if side is not None:
        return stage[side]
    return stage["R"] if stage["R"] == stage["L"] else UNSTAGEABLE


@pytest.mark.parametrize("rule_set", ["paper", "tnm8"])
def test_the_call_sites_agree_on_random_calls_and_sides(rule_set):
    rng = np.random.default_rng(15)
    n = 300
    calls = (rng.random((n, 17)) < rng.uniform(0.0, 0.3, (n, 1))).astype(np.int8)
    calls[rng.random((n, 17)) < 0.05] = -1  # unknown or absent: never malignant
    sides = tuple(rng.choice(np.array(["R", "L", "?"], dtype=object), n))
    sides = tuple(None if s == "?" else s for s in sides)
    expected = np.array([by_hand(row, side, rule_set) for row, side in zip(calls, sides, strict=True)])
    assert (expected == UNSTAGEABLE).any() and len(set(expected.tolist())) == 5  # every case is drawn

    assert np.array_equal(stage_scans(calls, sides, rule_set), expected)
    predicted = [stage_both_sides(row, side, rule_set) for row, side in zip(calls, sides, strict=True)]
    assert [UNSTAGEABLE if stage is None else stage for stage, _ in predicted] == expected.tolist()
    assert [by_side for _, by_side in predicted] == [{s: by_hand(row, s, rule_set) for s in ("R", "L")}
                                                     for row in calls]
    cohort = EvaluationCohort(tuple(f"P{i}" for i in range(n)), tuple(f"S{i}" for i in range(n)), sides,
                              np.zeros((n, 17), np.int8), np.zeros(n, np.int64), np.arange(n) % 2)
    baseline = thresholding_method(cohort, calls.astype(np.float64), (0.5,), rule_set, fixed=0.5)
    assert np.array_equal(baseline.n_pred, expected)


def test_station_calls_use_the_cutoff_and_call_absent_stations_benign():
    probability = np.array([[np.nan, STATION_CUTOFF, np.nextafter(STATION_CUTOFF, 0), 0.9]])
    assert station_calls(probability).tolist() == [[0, 1, 0, 1]]
    assert station_calls(probability, 0.95).tolist() == [[0, 0, 0, 0]]


def test_stage_scans_refuses_mismatched_inputs():
    with pytest.raises(StationError, match=r"station calls, got shape \(2, 5\)"):
        stage_scans(np.zeros((2, 5)), ["R", "L"])
    with pytest.raises(StationError, match="1 tumour sides for 2 scans"):
        stage_scans(np.zeros((2, 17)), ["R"])
    with pytest.raises(StationError, match="'X'"):
        stage_scans(np.zeros((1, 17)), ["X"])
