"""SUVmax thresholding: a station is malignant when its SUVmax inside the fused station mask exceeds t.

t is chosen per fold from {2.5, 3, ..., 5.5} by the training scans' station balanced accuracy (paper §4.2).
The SUVmax per station comes from the cache (`/stations/<name>` attribute `suv_max`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from evaluate.baselines.cohort import cutoff_method
from evaluate.baselines.cutoff import CutoffChoice, choose_cutoff
from evaluate.comparison import EvaluationCohort, MethodPredictions

if TYPE_CHECKING:  # evaluate.cohort reads the baselines' features: imported for the annotation only
    from evaluate.cohort import CohortData
    from evaluate.settings import EvaluateSettings

BASELINE = "thresholding"  # its key in evaluate/baselines/registry.py
SUV_THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5)


def choose_threshold(suv_max: np.ndarray, station_true: np.ndarray,
                     thresholds: tuple[float, ...] = SUV_THRESHOLDS) -> CutoffChoice:
    """The SUV threshold with the best training balanced accuracy; inputs are (scans, 17)."""
    return choose_cutoff(suv_max, station_true, thresholds)


def thresholding_method(cohort: EvaluationCohort, suv_max: np.ndarray, thresholds: tuple[float, ...], rule_set: str,
                        fixed: float | None = None) -> MethodPredictions:
    """SUVmax thresholding, t chosen per fold (or `fixed`); its score is the SUVmax (0 for absent stations)."""
    return cutoff_method(BASELINE, "Thresholding", "t", "SUV threshold", cohort, suv_max,
                         lambda s, y: choose_threshold(s, y, thresholds), rule_set, fixed)


def methods(data: CohortData, settings: EvaluateSettings, rule_set: str) -> Iterator[MethodPredictions]:
    """The registry's entry point: thresholding over every fold of the cohort."""
    yield thresholding_method(data.cohort, data.suv_max, settings.suv_thresholds, rule_set)
