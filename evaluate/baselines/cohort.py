"""Both baselines over the cross-validation folds of a cohort: cutoff chosen on each fold's training scans
(every scan not in the test fold), applied to its test scans, then staged by the dataset's rule set."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from cache.stations import stage_scans
from evaluate.baselines.cutoff import CutoffChoice, predict_above
from evaluate.baselines.lesion_overlap import choose_overlap
from evaluate.baselines.thresholding import choose_threshold
from evaluate.comparison import Cohort, MethodPredictions


def _per_fold(cohort: Cohort, scores: np.ndarray, choose: Callable[[np.ndarray, np.ndarray], CutoffChoice],
              fixed: float | None) -> tuple[np.ndarray, dict[int, float]]:
    pred = np.zeros(scores.shape, dtype=np.int8)
    cutoffs = {}
    for fold in cohort.folds:
        test = cohort.fold == fold
        cutoff = fixed if fixed is not None else choose(scores[~test], cohort.station_true[~test]).cutoff
        pred[test] = predict_above(scores[test], cutoff)
        cutoffs[fold] = cutoff
    return pred, cutoffs


def _method(name: str, cohort: Cohort, pred: np.ndarray, scores: np.ndarray, rule_set: str, note_key: str,
            cutoffs: dict[int, float]) -> MethodPredictions:
    notes = {note_key: ", ".join(f"fold {k}: {v:g}" for k, v in cutoffs.items())}
    return MethodPredictions(name=name, station_pred=pred, station_score=np.nan_to_num(scores, nan=0.0),
                             n_pred=stage_scans(pred, cohort.tumor_sides, rule_set), notes=notes)


def thresholding_method(cohort: Cohort, suv_max: np.ndarray, thresholds: tuple[float, ...], rule_set: str,
                        fixed: float | None = None) -> MethodPredictions:
    """SUVmax thresholding, t chosen per fold (or `fixed`); its score is the SUVmax (0 for absent stations)."""
    pred, cutoffs = _per_fold(cohort, suv_max, lambda s, y: choose_threshold(s, y, thresholds), fixed)
    label = f"t = {fixed:g}" if fixed is not None else _common_label("t", cutoffs)
    return _method(f"Thresholding ({label})", cohort, pred, suv_max, rule_set, "SUV threshold", cutoffs)


def overlap_method(cohort: Cohort, overlap: np.ndarray, fractions: tuple[float, ...], rule_set: str,
                   source: str, fixed: float | None = None) -> MethodPredictions:
    """Lesion overlap, o chosen per fold (or `fixed`); its score is the assigned lesions' overlap fraction."""
    pred, cutoffs = _per_fold(cohort, overlap, lambda s, y: choose_overlap(s, y, fractions), fixed)
    label = f"o = {fixed:g}" if fixed is not None else _common_label("o", cutoffs)
    return _method(f"Lesion overlap, {source} ({label})", cohort, pred, overlap, rule_set,
                   "overlap fraction o", cutoffs)


def _common_label(symbol: str, cutoffs: dict[int, float]) -> str:
    values = sorted(set(cutoffs.values()))
    return f"{symbol} = {values[0]:g}" if len(values) == 1 else f"{symbol} per fold"
