"""What the baselines need from one cache file: SUVmax per fused station, and lesion-to-station overlap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import h5py
import numpy as np

from cache import schema
from cache.reader import CacheScan
from cache.stations import station_names
from evaluate.baselines.lesion_overlap import label_lesions, station_overlap
from evaluate.baselines.pet_lesions import segment_pet_lesions


@dataclass(frozen=True)
class BaselineFeatures:
    """Per station (catalogue order): SUVmax in the fused mask (NaN: station absent from the scan) and the
    largest overlap fraction of a lesion assigned to it; where the lesions came from and how many there were."""

    suv_max: np.ndarray
    lesion_overlap: np.ndarray
    lesion_source: Literal["cache", "builtin"]
    n_lesions: int


def _cache_lesions(path: Path) -> np.ndarray | None:
    with h5py.File(path, "r", locking=False) as f:
        return f[schema.LESIONS][()] if schema.LESIONS in f else None


def scan_features(scan: CacheScan, lesion_source: Literal["auto", "cache", "builtin"], lesion_suv_threshold: float,
                  lesion_min_volume_ml: float) -> BaselineFeatures:
    """Baseline features of an open cache file; lesions from its /lesions or the built-in PET segmenter."""
    suv_max = np.full(len(station_names()), np.nan)
    for info in scan.info.stations.values():
        suv_max[info.code - 1] = info.suv_max
    lesions = None if lesion_source == "builtin" else _cache_lesions(scan.path)
    if lesion_source == "cache" and lesions is None:
        raise ValueError(f"{scan.path}: no /{schema.LESIONS} mask (the manifest's 'lesions' column was empty for "
                         f"{scan.info.key}); use --lesion-source builtin or auto")
    station_labels = np.asarray(scan.station_labels)
    if lesions is not None:
        labelled, count = label_lesions(lesions)
        source = "cache"
    else:
        labelled, count = segment_pet_lesions(np.asarray(scan.suv), scan.info.grid.spacing_mm, lesion_suv_threshold,
                                              lesion_min_volume_ml)
        source = "builtin"
    return BaselineFeatures(suv_max=suv_max, lesion_overlap=station_overlap(labelled, count, station_labels),
                            lesion_source=source, n_lesions=count)
