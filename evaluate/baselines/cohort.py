"""A baseline over the cross-validation folds of a cohort: a cutoff on a per-station score chosen on each fold's
training scans (every scan not in the test fold), applied to its test scans, then staged by the dataset's rule
set. Each baseline module (`thresholding.py`, `lesion_overlap.py`) names its score and candidates and calls
`cutoff_method`."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cache.stations import stage_scans
from evaluate.baselines.cutoff import CutoffChoice, predict_above
from evaluate.comparison import EvaluationCohort, MethodPredictions


def _per_fold(cohort: EvaluationCohort, scores: np.ndarray, choose: Callable[[np.ndarray, np.ndarray], CutoffChoice],
              fixed: float | None) -> tuple[np.ndarray, dict[int, float]]:
    pred = np.zeros(scores.shape, dtype=np.int8)
    cutoffs = {}
    for fold in cohort.folds:
        test = cohort.fold == fold
        cutoff = fixed if fixed is not None else choose(scores[~test], cohort.station_true[~test]).cutoff
        pred[test] = predict_above(scores[test], cutoff)
        cutoffs[fold] = cutoff
    return pred, cutoffs


def cutoff_method(baseline: str, name: str, symbol: str, note_key: str, cohort: EvaluationCohort, scores: np.ndarray,
                  choose: Callable[[np.ndarray, np.ndarray], CutoffChoice], rule_set: str,
                  fixed: float | None = None) -> MethodPredictions:
    """The predictions of registered baseline `baseline`, named "`name` (`symbol` = cutoff)" in the tables;
    the cutoff is chosen per fold by `choose(training scores, training labels)` (or `fixed`) and noted per fold
    under `note_key`. The score is the station's score, 0 where absent (NaN)."""
    pred, cutoffs = _per_fold(cohort, scores, choose, fixed)
    label = f"{symbol} = {fixed:g}" if fixed is not None else _common_label(symbol, cutoffs)
    notes = {note_key: ", ".join(f"fold {k}: {v:g}" for k, v in cutoffs.items())}
    return MethodPredictions(name=f"{name} ({label})", station_pred=pred,
                             station_score=np.nan_to_num(scores, nan=0.0),
                             n_pred=stage_scans(pred, cohort.tumor_sides, rule_set), notes=notes, baseline=baseline)


def _common_label(symbol: str, cutoffs: dict[int, float]) -> str:
    values = sorted(set(cutoffs.values()))
    return f"{symbol} = {values[0]:g}" if len(values) == 1 else f"{symbol} per fold"
