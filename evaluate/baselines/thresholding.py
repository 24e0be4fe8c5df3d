"""SUVmax thresholding: a station is malignant when its SUVmax inside the fused station mask exceeds t.

t is chosen per fold from {2.5, 3, ..., 5.5} by the training scans' station balanced accuracy (paper §4.2).
The SUVmax per station comes from the cache (`/stations/<name>` attribute `suv_max`).
"""

from __future__ import annotations

import numpy as np

from evaluate.baselines.cutoff import CutoffChoice, choose_cutoff, predict_above

SUV_THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5)


def choose_threshold(suv_max: np.ndarray, station_true: np.ndarray,
                     thresholds: tuple[float, ...] = SUV_THRESHOLDS) -> CutoffChoice:
    """The SUV threshold with the best training balanced accuracy; inputs are (scans, 17)."""
    return choose_cutoff(suv_max, station_true, thresholds)


def threshold_stations(suv_max: np.ndarray, threshold: float) -> np.ndarray:
    """(scans, 17) int8 status: SUVmax > threshold; stations absent from a scan's fused mask (NaN) are benign."""
    return predict_above(suv_max, threshold)
