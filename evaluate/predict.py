"""`python -m evaluate predict`: one new PET/CT through the whole chain with a trained fold's model.

The scan goes through exactly the preprocessing of the model's dataset (`preprocess.pipeline.process_scan`:
read, SUV, resample/crop, multi-atlas registration and fusion, weight maps, station statistics) into a cache
file in the output folder, then through train's inference (`train.inference.predict_scans`: the centroid patch per
station). Outputs: the N-stage and a station table on stdout, `prediction.json`, the fused station mask on the
original CT grid with its names and colour tables, the SUV, probability and atlas-agreement maps
(evaluate/viewer_outputs.py: they open in 3D Slicer and ITK-SNAP over the CT), a QA PNG, and per-step timings.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.build_settings import BuildSettings, build_settings_for, expected_settings
from cache.dataset import DatasetConfig, load_dataset
from cache.manifest import ManifestRow
from cache.reader import open_scan
from cache.schema import cache_file_name
from cache.stations import UnknownTumorSideError, n_stage, station_names
from evaluate.figures import qa_overlay_figure
from evaluate.settings import PredictSettings
from evaluate.viewer_outputs import write_viewer_outputs
from preprocess.images import read_image
from preprocess.step_timing import timed

PATIENT_ID, SCAN_ID = "new", "scan"


class PredictError(ValueError):
    """A scan or model that cannot be staged; the message names the input and what to do."""


@dataclass(frozen=True)
class StationPrediction:
    name: str
    probability: float  # NaN when the station is absent from the fused mask
    malignant: bool
    suv_max: float
    volume_ml: float


@dataclass(frozen=True)
class ScanPrediction:
    n_stage: int | None  # None: the tumour side is unknown and decides the stage
    n_stage_by_side: dict[str, int]
    tumor_side: str | None
    rule_set: str
    stations: tuple[StationPrediction, ...]
    timings_s: dict[str, float]


def _check_inputs(settings: PredictSettings) -> None:
    for flag in ("ct", "pet", "totalseg", "model"):
        value = getattr(settings, flag)
        if not value:
            raise PredictError(f"--{flag} is required")
        if not Path(value).exists():
            raise PredictError(f"--{flag} {value}: no such file or folder")


def _row(settings: PredictSettings) -> ManifestRow:
    side = None if settings.tumor_side == "unknown" else settings.tumor_side
    return ManifestRow(row=1, patient_id=PATIENT_ID, scan_id=SCAN_ID, ct=Path(settings.ct).resolve(),
                       pet=Path(settings.pet).resolve(), totalseg=Path(settings.totalseg).resolve(), lesions=None,
                       tumor_side=side, n_clinical=None, n_pathological=None, stations_clinical=(),
                       stations_pathological=(), split_group="")


def _dataset(settings: PredictSettings, model_dataset: str, out: Path) -> tuple[DatasetConfig, BuildSettings]:
    """The model's dataset config (its preprocessing settings), with the cache in `out` and the atlas bank given."""
    name = settings.dataset or model_dataset
    config = load_dataset(name)
    overrides = {"cache_root": str((out / "cache").resolve()), "pet_nifti_is_suv": settings.pet_is_suv}
    if settings.atlas_bank:
        overrides["atlas_bank"] = str(Path(settings.atlas_bank).resolve())
    config = dataclasses.replace(config, **overrides)
    if not config.atlas_bank_path.is_dir():
        raise PredictError(f"atlas bank {config.atlas_bank_path} not found (dataset {name}); pass --atlas-bank DIR")
    return config, build_settings_for(name)


def preprocess_scan(row: ManifestRow, config: DatasetConfig, build: BuildSettings, device: str) -> dict[str, float]:
    """The dataset's preprocessing chain for one scan into `config.cache_dir` (a current cache file there from
    an earlier run on the same inputs and settings is reused); its step timings."""
    from cache.checksums import file_digest
    from preprocess.pipeline import RunContext, process_scan, resolve_device
    from preprocess.suv import SuvSettings

    context = RunContext(config, build, SuvSettings(), False, resolve_device(device),
                         file_digest(config.atlas_bank_path))
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    outcome = process_scan(row, context)
    if outcome.status == "failed":
        raise PredictError(f"preprocessing failed: {outcome.error}")
    return {k: v for k, v in outcome.timings_s.items() if k != "total"}


def stage_both_sides(positive: list[str], side: str | None, rule_set: str) -> tuple[int | None, dict[str, int]]:
    """The N-stage for the given side (None when unknown and the sides differ) and the stage for each side."""
    by_side = {s: n_stage(positive, s, rule_set) for s in ("R", "L")}
    try:
        return n_stage(positive, side, rule_set), by_side
    except UnknownTumorSideError:
        return None, by_side


def station_table_text(prediction: ScanPrediction) -> str:
    """The station table printed for the user: probability, status and SUVmax per station."""
    lines = [f"{'station':>7}  {'probability':>11}  {'status':>9}  {'SUVmax':>6}  {'volume ml':>9}"]
    for s in prediction.stations:
        if math.isnan(s.probability):
            lines.append(f"{s.name:>7}  {'-':>11}  {'absent':>9}  {'-':>6}  {'-':>9}")
            continue
        lines.append(f"{s.name:>7}  {s.probability:>11.3f}  {'MALIGNANT' if s.malignant else 'benign':>9}  "
                     f"{s.suv_max:>6.2f}  {s.volume_ml:>9.1f}")
    return "\n".join(lines)


def n_stage_text(prediction: ScanPrediction) -> str:
    if prediction.n_stage is not None:
        return f"N-stage: N{prediction.n_stage} (tumour side {prediction.tumor_side or 'unknown'}, " \
               f"rule set {prediction.rule_set})"
    return (f"N-stage: depends on the tumour side, which is unknown: N{prediction.n_stage_by_side['R']} if right, "
            f"N{prediction.n_stage_by_side['L']} if left (rule set {prediction.rule_set}); pass --tumor-side")


def _json(prediction: ScanPrediction, settings: PredictSettings) -> dict:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 6)

    return {
        "n_stage": prediction.n_stage, "n_stage_by_side": prediction.n_stage_by_side,
        "tumor_side": prediction.tumor_side, "rule_set": prediction.rule_set,
        "probability_cutoff": settings.probability_cutoff, "model": settings.model,
        "stations": [{"station": s.name, "probability": number(s.probability), "malignant": s.malignant,
                      "present": not math.isnan(s.probability), "suv_max": number(s.suv_max),
                      "volume_ml": number(s.volume_ml)} for s in prediction.stations],
        "timings_s": {k: round(v, 3) for k, v in prediction.timings_s.items()},
    }


def run_predict(settings: PredictSettings) -> int:
    """Stage one scan and write the outputs; returns the exit status (0)."""
    import torch

    from cache.reader import CacheReader
    from train.inference import load_model, predict_scans

    _check_inputs(settings)
    start = time.perf_counter()
    timings: dict[str, float] = {}
    out = Path(settings.out or f"predict_{Path(settings.ct).name.split('.')[0]}")
    out.mkdir(parents=True, exist_ok=True)
    device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    trained = timed(timings, "load_model", lambda: load_model(settings.model, device))
    train_settings = trained.settings
    config, build = _dataset(settings, train_settings.dataset, out)
    row = _row(settings)
    timings.update(preprocess_scan(row, config, build, device))
    cache_path = config.cache_dir / cache_file_name(PATIENT_ID, SCAN_ID)
    reader = CacheReader([cache_path], expected_settings(build))
    probabilities = timed(timings, "inference", lambda: predict_scans(
        trained, reader, [row.tumor_side], config.rule_set, torch.device(device),
        train_settings.inference_samples, train_settings.seed, scan_names=[str(settings.ct)]).station_prob[0])
    with open_scan(cache_path) as scan:
        info = scan.info
        stations = tuple(
            StationPrediction(name, float(p), bool(not math.isnan(p) and p >= settings.probability_cutoff),
                              info.stations[name].suv_max if name in info.stations else float("nan"),
                              info.stations[name].volume_ml if name in info.stations else float("nan"))
            for name, p in zip(station_names(), probabilities, strict=True))
        positive = [s.name for s in stations if s.malignant]
        stage, by_side = stage_both_sides(positive, row.tumor_side, config.rule_set)
        status = np.array([int(s.malignant) for s in stations], dtype=np.int8)
        agreement = [info.stations[n].vote_agreement if n in info.stations else math.nan for n in station_names()]
        timed(timings, "outputs", lambda: (
            write_viewer_outputs(out, read_image(row.ct, modality="CT"), info.grid, np.asarray(scan.station_labels),
                                 np.asarray(scan.suv), probabilities, np.array(agreement)),
            qa_overlay_figure(np.asarray(scan.ct), np.asarray(scan.suv), np.asarray(scan.station_labels), status,
                              f"{Path(settings.ct).name}: N{stage if stage is not None else '?'}",
                              out / "qa.png", info.grid, probability=np.nan_to_num(probabilities))))
    timings["total"] = time.perf_counter() - start
    prediction = ScanPrediction(stage, by_side, row.tumor_side, config.rule_set, stations, timings)
    (out / "prediction.json").write_text(json.dumps(_json(prediction, settings), indent=1))
    print(n_stage_text(prediction))
    print(station_table_text(prediction))
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
    print(f"outputs in {out}: prediction.json, stations.nii.gz (+ stations.ctbl for 3D Slicer, stations.itksnap.txt "
          f"for ITK-SNAP), suv.nii.gz, probability.nii.gz, agreement.nii.gz, qa.png; cache {cache_path}")
    return 0
