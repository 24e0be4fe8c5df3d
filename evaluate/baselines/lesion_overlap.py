"""Segmentation-overlap baseline: PET lesions assigned to the station they overlap most (paper §4.2).

Each lesion (a connected component of a lesion mask) is assigned to the station that holds the largest
fraction of its voxels; the station is malignant when that fraction exceeds o, with o chosen per fold from
{0.05, 0.1, 0.2} by training balanced accuracy (or reported for each o). Per scan this reduces to one number per
station: the largest overlap fraction among the lesions assigned to it, so every o is a cutoff on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from cache.stations import station_names
from evaluate.baselines.cohort import cutoff_method
from evaluate.baselines.cutoff import CutoffChoice, choose_cutoff
from evaluate.comparison import EvaluationCohort, MethodPredictions

if TYPE_CHECKING:  # evaluate.cohort reads this module's overlaps: imported for the annotation only
    from evaluate.cohort import CohortData
    from evaluate.settings import EvaluateSettings

BASELINE = "lesion_overlap"  # its key in evaluate/baselines/registry.py
OVERLAP_FRACTIONS = (0.05, 0.1, 0.2)
# each lesion source ("cache": the manifest's masks, "builtin": evaluate/baselines/pet_lesions.py) as the tables name it
LESION_SOURCE_LABELS = {"cache": "manifest lesion masks", "builtin": "built-in PET segmenter"}


def label_lesions(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components (26-connectivity) of a binary or multi-label lesion mask: (labels int32, count)."""
    labels, count = ndimage.label(np.asarray(mask) > 0, structure=np.ones((3, 3, 3), dtype=bool))
    return labels.astype(np.int32), int(count)


def station_overlap(lesion_labels: np.ndarray, count: int, station_labels: np.ndarray) -> np.ndarray:
    """float64[17]: per station, the largest overlap fraction of a lesion assigned to it (0 when none).

    `lesion_labels` holds lesion ids 1..count (0 background), `station_labels` station codes 1..17 on the same
    (z, y, x) grid. Overlap fraction = lesion voxels inside the station / lesion voxels.
    """
    if lesion_labels.shape != station_labels.shape:
        raise ValueError(f"lesion mask {lesion_labels.shape} and station labels {station_labels.shape} differ "
                         "in shape; both must be on the cache grid")
    n_codes = len(station_names()) + 1
    result = np.zeros(n_codes - 1, dtype=np.float64)
    if count == 0:
        return result
    inside = lesion_labels > 0
    pairs = lesion_labels[inside].astype(np.int64) * n_codes + station_labels[inside].astype(np.int64)
    counts = np.bincount(pairs, minlength=(count + 1) * n_codes).reshape(count + 1, n_codes)[1:]
    fractions = counts[:, 1:] / counts.sum(axis=1, keepdims=True)  # (lesions, 17), background left out
    best = np.argmax(fractions, axis=1)
    best_fraction = fractions[np.arange(count), best]
    np.maximum.at(result, best, best_fraction)
    return result


def choose_overlap(overlap: np.ndarray, station_true: np.ndarray,
                   fractions: tuple[float, ...] = OVERLAP_FRACTIONS) -> CutoffChoice:
    """The overlap fraction o with the best training balanced accuracy; inputs are (scans, 17)."""
    return choose_cutoff(overlap, station_true, fractions)


def overlap_method(cohort: EvaluationCohort, overlap: np.ndarray, fractions: tuple[float, ...], rule_set: str,
                   source: str, fixed: float | None = None) -> MethodPredictions:
    """Lesion overlap, o chosen per fold (or `fixed`); its score is the assigned lesions' overlap fraction."""
    return cutoff_method(BASELINE, f"Lesion overlap, {source}", "o", "overlap fraction o", cohort, overlap,
                         lambda s, y: choose_overlap(s, y, fractions), rule_set, fixed)


def methods(data: CohortData, settings: EvaluateSettings, rule_set: str) -> Iterator[MethodPredictions]:
    """The registry's entry point: lesion overlap over every fold of the cohort, once per lesion source."""
    for source, overlap in data.lesion_overlap.items():
        yield overlap_method(data.cohort, overlap, settings.overlap_fractions, rule_set, LESION_SOURCE_LABELS[source])
