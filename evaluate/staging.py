"""Rule-based N-stage of predicted station statuses, with unstageable scans kept and marked (-1).

Every method (TS1 and both baselines) is staged here with `cache.stations.n_stage` and the dataset's rule set,
so they differ only in their station predictions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cache.stations import UnknownTumorSideError, n_stage, station_names

UNSTAGEABLE = -1


def stage_scans(positive: np.ndarray, tumor_sides: Sequence[str | None], rule_set: str) -> np.ndarray:
    """int64 N-stage per scan from a (scans, 17) boolean station matrix; -1 where the tumour side is unknown
    and the two sides would give different stages (report those scans separately)."""
    positive = np.asarray(positive, dtype=bool)
    if positive.ndim != 2 or positive.shape[1] != len(station_names()) or positive.shape[0] != len(tumor_sides):
        raise ValueError(f"expected ({len(tumor_sides)}, {len(station_names())}) station statuses, "
                         f"got {positive.shape}")
    names = np.array(station_names())
    stages = np.empty(positive.shape[0], dtype=np.int64)
    for i, (row, side) in enumerate(zip(positive, tumor_sides, strict=True)):
        try:
            stages[i] = n_stage(names[row].tolist(), side, rule_set)
        except UnknownTumorSideError:
            stages[i] = UNSTAGEABLE
    return stages
