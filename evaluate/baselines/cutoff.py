"""A score per station turned into a status by a cutoff chosen on the training folds (both registered baselines)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from evaluate.metrics import station_metrics


@dataclass(frozen=True)
class CutoffChoice:
    """The chosen cutoff and the training balanced accuracy of every candidate (candidate order)."""

    cutoff: float
    candidates: tuple[float, ...]
    training_balanced_accuracy: tuple[float, ...]


def predict_above(scores: np.ndarray, cutoff: float) -> np.ndarray:
    """Station status 1 where score > cutoff; a NaN score (station not mapped in this scan) is benign."""
    scores = np.asarray(scores, dtype=np.float64)
    return np.where(np.isnan(scores), 0, scores > cutoff).astype(np.int8)


def choose_cutoff(scores: np.ndarray, station_true: np.ndarray, candidates: tuple[float, ...]) -> CutoffChoice:
    """The candidate with the highest balanced accuracy on the training stations with known labels.

    `scores` and `station_true` are (scans, 17); labels -1 (unknown) are left out. Ties go to the first
    candidate in the given order. Training stations of one class only cannot choose: that is an error.
    """
    scores, station_true = np.asarray(scores, dtype=np.float64), np.asarray(station_true)
    if scores.shape != station_true.shape:
        raise ValueError(f"scores {scores.shape} and labels {station_true.shape} differ in shape")
    known = station_true >= 0
    y_true = station_true[known]
    if np.unique(y_true).size < 2:
        raise ValueError(
            f"cannot choose a cutoff: the {y_true.size} training stations with known labels hold one class only "
            "(need malignant and benign stations)"
        )
    accuracies = tuple(
        station_metrics(y_true, predict_above(scores, c)[known]).balanced_accuracy for c in candidates
    )
    best = int(np.argmax(accuracies))
    return CutoffChoice(cutoff=float(candidates[best]), candidates=tuple(candidates),
                        training_balanced_accuracy=accuracies)
