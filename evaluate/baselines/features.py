"""What the baselines need from one cache file: SUVmax per fused station, and lesion-to-station overlap."""

from __future__ import annotations

from collections.abc import Sequence
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

LesionSource = Literal["cache", "builtin"]


@dataclass(frozen=True)
class BaselineFeatures:
    """Per station (catalogue order): SUVmax in the fused mask (NaN: station absent from the scan), and per
    lesion source the largest overlap fraction of a lesion assigned to the station, with the lesion count."""

    suv_max: np.ndarray
    lesion_overlap: dict[str, np.ndarray]
    n_lesions: dict[str, int]


def has_cache_lesions(path: Path) -> bool:
    with h5py.File(path, "r", locking=False) as f:
        return schema.LESIONS in f


def lesion_sources(requested: Literal["auto", "cache", "builtin", "both"], paths: Sequence[Path]
                   ) -> tuple[LesionSource, ...]:
    """Which lesion masks the overlap baseline uses for a cohort.

    auto: the cache's /lesions (from the manifest) when every scan has one, else the built-in segmenter;
    both: two overlap baselines, e.g. when the manifest's masks are the phantom's truth (an oracle segmenter).
    """
    if requested == "builtin":
        return ("builtin",)
    missing = [p for p in paths if not has_cache_lesions(p)]
    if requested == "auto":
        return ("builtin",) if missing else ("cache",)
    if missing:
        raise ValueError(f"{missing[0]}: no /{schema.LESIONS} mask (the manifest's 'lesions' column was empty for "
                         f"{len(missing)} scan(s)); use --lesion-source builtin or auto")
    return ("cache",) if requested == "cache" else ("cache", "builtin")


def scan_features(scan: CacheScan, sources: Sequence[LesionSource], lesion_suv_threshold: float,
                  lesion_min_volume_ml: float) -> BaselineFeatures:
    """Baseline features of an open cache file, with lesions from each of `sources`."""
    suv_max = np.full(len(station_names()), np.nan)
    for info in scan.info.stations.values():
        suv_max[info.code - 1] = info.suv_max
    station_labels = np.asarray(scan.station_labels)
    overlap, counts = {}, {}
    for source in sources:
        if source == "cache":
            with h5py.File(scan.path, "r", locking=False) as f:
                if schema.LESIONS not in f:
                    raise ValueError(f"{scan.path}: no /{schema.LESIONS} mask; use --lesion-source builtin or auto")
                labelled, count = label_lesions(f[schema.LESIONS][()])
        else:
            labelled, count = segment_pet_lesions(np.asarray(scan.suv), scan.info.grid.spacing_mm,
                                                  lesion_suv_threshold, lesion_min_volume_ml)
        overlap[source], counts[source] = station_overlap(labelled, count, station_labels), count
    return BaselineFeatures(suv_max=suv_max, lesion_overlap=overlap, n_lesions=counts)
