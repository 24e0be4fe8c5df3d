"""A simple built-in PET lesion segmenter, used by the overlap baseline when no lesion masks are given.

Lesions are the connected components (26-connectivity) of SUV >= `suv_threshold` with a volume of at least
`min_volume_ml` (defaults in evaluate/settings.py: SUV 2.5, the clinical cutoff, and 0.2 ml). It stands in
for a trained segmenter (the paper used the autoPET 2022 winner); it knows nothing of anatomy, so physiological
uptake (myocardium, brown fat) counts as lesions where it overlaps a station, as an untrained reader's
threshold would.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage


def segment_pet_lesions(suv: np.ndarray, spacing_mm: tuple[float, float, float], suv_threshold: float,
                        min_volume_ml: float) -> tuple[np.ndarray, int]:
    """Label image (int32, 0 background, lesions 1..count) of the PET lesions in a (z, y, x) SUV volume."""
    labels, count = ndimage.label(np.asarray(suv) >= suv_threshold, structure=np.ones((3, 3, 3), dtype=bool))
    if count == 0:
        return labels.astype(np.int32), 0
    voxel_ml = float(np.prod(spacing_mm)) / 1000.0
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    keep = sizes * voxel_ml >= min_volume_ml
    keep[0] = False
    new_ids = np.zeros(count + 1, dtype=np.int32)
    new_ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return new_ids[labels], int(keep.sum())
