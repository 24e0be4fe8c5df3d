"""Atlas-subset sensitivity (paper §4.1): how much TS1's station predictions depend on which atlases are fused.

Per scan, every atlas of the bank is registered on its own (`preprocess.register.map_stations` with a one-atlas
bank), giving per-atlas station labels; every k-of-N subset and the full bank are then fused by majority vote
(`preprocess.register.fusion.majority_vote`) from the same registrations, turned into station tables and a
temporary cache file, and classified by the model of the scan's test fold with train's inference (centroid
patch). Each subset is compared with the full bank by exact McNemar (`atlas_analysis.compare_subsets`).
The cost is one registration of the bank per scan, so the analysis runs on a chosen number of test scans.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import numpy as np

from cache.build_settings import BuildSettings, expected_settings
from cache.dataset import DatasetConfig
from cache.manifest import ManifestRow, read_manifest
from cache.run_log import progress
from cache.schema import cache_file_name
from cache.stations import station_calls, station_names
from cache.writer import ScanLabels, ScanRecord, write_scan
from evaluate.atlas_analysis import SubsetResult, atlas_subsets, compare_subsets


@dataclasses.dataclass(frozen=True)
class SubsetStudy:
    """Station predictions (scans, 17) per atlas subset (atlas names) and with the full bank, and the truth."""

    scan_ids: tuple[str, ...]
    station_true: np.ndarray
    pred_all: np.ndarray
    pred_subsets: dict[tuple[str, ...], np.ndarray]
    results: tuple[SubsetResult, ...]


def per_atlas_labels(row: ManifestRow, config: DatasetConfig, build: BuildSettings, bank, device: str):
    """The prepared scan and its (N, z, y, x) station labels, one registration per atlas of `bank`."""
    from preprocess.prepare import prepare_scan
    from preprocess.register import map_stations, registration_settings
    from preprocess.suv import SuvSettings

    prepared = prepare_scan(row, config, build.spacing_mm, build.crop_margin_mm, SuvSettings())
    settings = dataclasses.replace(registration_settings(build.registration_preset), qa=False)
    labels = [map_stations(prepared.ct_hu, prepared.structures, prepared.grid,
                           dataclasses.replace(bank, atlases=(atlas,)), settings, device).labels
              for atlas in bank.atlases]
    return prepared, np.stack(labels)


def _classify(labels: np.ndarray, agreement: dict[int, float], prepared, row: ManifestRow, config: DatasetConfig,
              build: BuildSettings, model, train_settings, device: str, folder: Path) -> np.ndarray:
    """Binary station predictions (17,) of the model for one fused label volume (absent stations benign).

    `agreement[code]`: the subset's mean vote agreement inside each fused station, as the pipeline stores it."""
    import torch

    from preprocess.station_stats import station_tables
    from train.data import open_part
    from train.inference import predict

    record = ScanRecord(
        dataset=config.name, patient_id=row.patient_id, scan_id=row.scan_id, grid=prepared.grid,
        ct_hu=prepared.ct_hu, suv=prepared.suv, station_labels=np.ascontiguousarray(labels, dtype=np.uint8),
        stations=station_tables(labels, prepared.suv, prepared.grid, agreement),
        labels=ScanLabels.from_manifest_row(row), settings=(build,), inputs={"ct": "atlas-subset study"},
        rule_set=config.rule_set)
    temporary = dataclasses.replace(config, cache_root=str(folder))
    write_scan(temporary.cache_dir / cache_file_name(row.patient_id, row.scan_id), record)
    part = open_part(temporary, [row], (row.patient_id,), expected_settings(build))
    probability = predict(model, part, train_settings, torch.device(device)).station_prob[0]
    part.reader.close()
    return station_calls(probability)


def run_subset_study(config: DatasetConfig, build: BuildSettings, run: Path, scans: list[tuple[str, str, int]],
                     subset_size: int, device: str) -> SubsetStudy:
    """The study on `scans` ((patient_id, scan_id, test fold) each), with the run's model of each fold."""
    from preprocess.pipeline import vote_agreement
    from preprocess.register import load_atlas_bank
    from preprocess.register.fusion import majority_vote
    from train.inference import load_trained

    rows = {(r.patient_id, r.scan_id): r for r in read_manifest(config.manifest_path, config.root,
                                                                    config.rule_set).rows}
    bank = load_atlas_bank(config.atlas_bank_path, build.spacing_mm, build.crop_margin_mm)
    names = tuple(a.name for a in bank.atlases)
    subsets = atlas_subsets(len(names), subset_size)
    models = {}
    truth, pred_all = [], []
    pred_subsets: dict[tuple[str, ...], list[np.ndarray]] = {tuple(names[i] for i in s): [] for s in subsets}
    with tempfile.TemporaryDirectory(prefix="atlas_subsets_") as folder:
        for patient_id, scan_id, fold in progress(scans, desc="atlas subsets", unit="scan"):
            row = rows[(patient_id, scan_id)]
            if fold not in models:
                models[fold] = load_trained(run / f"fold{fold}", device)
            model, train_settings = models[fold]
            prepared, labels = per_atlas_labels(row, config, build, bank, device)

            def classify(subset: tuple[int, ...], labels=labels, prepared=prepared, row=row, model=model,
                         train_settings=train_settings) -> np.ndarray:
                fused, votes = majority_vote(labels[list(subset)], len(station_names()))
                agreement = vote_agreement(fused, votes, len(subset))
                return _classify(fused, agreement, prepared, row, config, build, model, train_settings, device,
                                 Path(folder))

            pred_all.append(classify(tuple(range(len(names)))))
            for subset in subsets:
                pred_subsets[tuple(names[i] for i in subset)].append(classify(subset))
            truth.append(row.station_status(config.label_column))
    station_true = np.stack(truth).astype(np.int8)
    pred_all_array = np.stack(pred_all)
    stacked = {k: np.stack(v) for k, v in pred_subsets.items()}
    return SubsetStudy(scan_ids=tuple(s for _, s, _ in scans), station_true=station_true, pred_all=pred_all_array,
                       pred_subsets=stacked, results=tuple(compare_subsets(station_true, pred_all_array, stacked)))
