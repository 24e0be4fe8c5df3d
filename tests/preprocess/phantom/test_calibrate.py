"""The calibration command: thresholding figures as `evaluate` computes them, on phantom patients in memory."""

from __future__ import annotations

import numpy as np
import pytest

from cache.stations import stage_scans
from evaluate.baselines.thresholding import SUV_THRESHOLDS
from evaluate.baselines.thresholding import choose_threshold as evaluate_choose_threshold
from evaluate.metrics import n_stage_metrics, station_metrics
from preprocess.phantom.calibrate import (
    PAPER_FIGURES,
    PAPER_THRESHOLDS,
    StationSuvTable,
    calibrate,
    choose_threshold,
    main,
    predict_stations,
    thresholding_figures,
)


def _table(patients: int, seed: int) -> StationSuvTable:
    """Random station SUVmax with malignant stations hotter, and the truth they imply under rule set `paper`."""
    rng = np.random.default_rng(seed)
    positive = rng.random((patients, 17)) < 0.08
    suv = rng.lognormal(np.log(np.where(positive, 6.0, 1.8)), 0.6)
    suv[rng.random((patients, 17)) < 0.02] = np.nan  # a station outside the field of view
    sides = tuple(rng.choice(["R", "L"], size=patients))
    stages = stage_scans(positive, sides, "paper")
    states = tuple(rng.choice(["none", "mild", "granulomatous"], size=patients))
    return StationSuvTable(suv, positive, sides, stages, states)


def test_figures_and_threshold_agree_with_evaluate():
    table = _table(120, 3)
    rows = np.arange(10, 120)
    assert PAPER_THRESHOLDS == SUV_THRESHOLDS
    truth = table.positive[rows].astype(int)
    t = choose_threshold(table.suv_max[rows], table.positive[rows])
    assert t == evaluate_choose_threshold(table.suv_max[rows], truth).cutoff
    figures = thresholding_figures(table, rows, t)
    predicted = predict_stations(table.suv_max[rows], t)
    stations = station_metrics(truth.ravel(), predicted.astype(int).ravel())
    stages = n_stage_metrics(table.n_stage[rows], stage_scans(predicted, [table.sides[i] for i in rows], "paper"))
    expected = [stations.accuracy, stations.balanced_accuracy, stations.sensitivity, stations.specificity,
                stages.accuracy, stages.sensitivity, stages.specificity]
    np.testing.assert_allclose([figures[name] for name in PAPER_FIGURES], expected)


def test_calibrate_chooses_a_threshold_per_fold_and_counts_the_labels():
    table = _table(100, 4)
    result = calibrate(table, seed=0)
    assert len(result.thresholds) == 5 and set(result.thresholds) <= set(PAPER_THRESHOLDS)
    assert abs(sum(result.cn_fractions) - 1.0) < 1e-9
    assert [count for _, count in result.ranking] == sorted(table.positive.sum(axis=0).tolist(), reverse=True)
    assert sum(n for _, n in result.right_by_state.values()) == 100


def test_the_command_prints_every_figure_beside_the_paper(capsys):
    assert main(["--patients", "20", "--spacing-mm", "6", "--pet-spacing-mm", "6"]) == 0
    out = capsys.readouterr().out
    for name, paper in PAPER_FIGURES.items():
        line = next(line for line in out.splitlines() if line.startswith(name))
        assert f"{paper:.2f}" in line
    assert "threshold chosen per fold:" in out and "cN mix" in out and "granulomatous" in out


def test_too_few_patients_or_one_class_are_refused(capsys):
    assert main(["--patients", "4"]) == 2
    assert "too few for 5 folds" in capsys.readouterr().err
    table = _table(30, 5)
    benign = StationSuvTable(table.suv_max, np.zeros_like(table.positive), table.sides, np.zeros(30, int),
                             table.states)
    with pytest.raises(ValueError, match="training stations are all benign; draw more patients"):
        calibrate(benign, seed=0)
