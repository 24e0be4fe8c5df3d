"""The evaluated cohort read from a dataset's cache files: truth per scan, test fold per scan, and the
baselines' features, in one pass over the files."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.dataset import Study
from cache.reader import CacheError, cache_files, open_scan, read_info
from cache.run_log import progress
from cache.stations import station_names
from cache.writer import ScanLabels
from evaluate.baselines.features import BaselineFeatures, lesion_sources, scan_features
from evaluate.comparison import EvaluationCohort
from evaluate.settings import EvaluateSettings


@dataclass(frozen=True)
class CohortData:
    """Truth and baseline features of the scans of the evaluated folds, and their cache files (same order)."""

    cohort: EvaluationCohort
    paths: tuple[Path, ...]
    suv_max: np.ndarray  # (scans, 17), NaN where the station is absent
    lesion_overlap: dict[str, np.ndarray]  # lesion source ("cache", "builtin") -> (scans, 17)
    n_lesions: dict[str, np.ndarray]  # lesion source -> (scans,)


def scan_truth(labels: ScanLabels, label_column: str) -> tuple[np.ndarray, int]:
    """(station status int8[17], N-stage or -1) of a cache file's labels for the label column (cN or pN)."""
    status, n = ((labels.station_clinical, labels.n_clinical) if label_column == "cN"
                 else (labels.station_pathological, labels.n_pathological))
    return np.asarray(status, dtype=np.int8), -1 if n is None else int(n)


def study_cache_files(study: Study) -> list[Path]:
    """Every cache file of the study's members (each member's cache folder)."""
    return [p for member in study.members for p in cache_files(member.cache_dir)]


def load_evaluation_cohort(paths: list[Path], test_fold: Mapping[str, int], label_column: str,
                           settings: EvaluateSettings, expected_settings: Mapping[str, Mapping] | None = None,
                           study: Study | None = None) -> CohortData:
    """Read every cache file whose patient is a test patient of an evaluated fold (`test_fold`: patient -> fold).

    A patient of the folds without a cache file is an error naming the patient: the report would otherwise
    silently cover fewer scans than the trained model was tested on. Files built with other preprocessing
    settings than `expected_settings` are refused (cache.reader.StaleCacheError). With a `study`, each file's
    dataset is the member whose cache folder holds it: patient ids become pool ids (`<dataset>/<id>`), and the
    station truth of a member without trusted station labels is unknown (-1), so no station metric counts it.
    """
    infos = [read_info(p, expected_settings) for p in paths]
    members = {m.cache_dir.resolve(): m for m in study.members} if study else {}
    member = [members.get(Path(p).parent.resolve()) for p in paths]
    ids = [i.patient_id if m is None else study.patient_id(m, i.patient_id) for i, m in zip(infos, member,
                                                                                            strict=True)]
    chosen = [(p, i, pid, m) for p, i, pid, m in zip(paths, infos, ids, member, strict=True) if pid in test_fold]
    missing = sorted(set(test_fold) - {pid for _, _, pid, _ in chosen})
    if missing:
        raise CacheError(f"no cache file for test patient(s) {', '.join(missing[:10])}; run "
                         f"python -m preprocess --dataset {settings.dataset} first")
    n = len(chosen)
    station_true = np.zeros((n, len(station_names())), dtype=np.int8)
    n_true = np.zeros(n, dtype=np.int64)
    suv_max = np.zeros((n, len(station_names())))
    sources = lesion_sources(settings.lesion_source, [c[0] for c in chosen])
    overlap = {source: np.zeros_like(suv_max) for source in sources}
    n_lesions = {source: np.zeros(n, dtype=np.int64) for source in sources}
    for k, (path, info, _, dataset) in enumerate(progress(chosen, desc="baseline features", unit="scan")):
        station_true[k], n_true[k] = scan_truth(info.labels, label_column)
        if dataset is not None and not dataset.station_labels:
            station_true[k] = -1
        with open_scan(path) as scan:
            features: BaselineFeatures = scan_features(scan, sources, settings.lesion_suv_threshold,
                                                       settings.lesion_min_volume_ml)
        suv_max[k] = features.suv_max
        for source in sources:
            overlap[source][k], n_lesions[source][k] = features.lesion_overlap[source], features.n_lesions[source]
    cohort = EvaluationCohort(
        patient_ids=tuple(pid for _, _, pid, _ in chosen), scan_ids=tuple(i.scan_id for _, i, _, _ in chosen),
        tumor_sides=tuple(i.labels.tumor_side for _, i, _, _ in chosen), station_true=station_true, n_true=n_true,
        fold=np.array([test_fold[pid] for _, _, pid, _ in chosen], dtype=np.int64),
    )
    return CohortData(cohort=cohort, paths=tuple(c[0] for c in chosen), suv_max=suv_max, lesion_overlap=overlap,
                      n_lesions=n_lesions)
