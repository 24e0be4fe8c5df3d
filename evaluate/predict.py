"""`python -m evaluate predict`: one new PET/CT through the whole chain with a trained model (one fold, or every
fold of a run with their probabilities averaged); `predict(ct, pet, model, ...)` does the same from Python.

The scan goes through exactly the preprocessing of the model's dataset (`preprocess.pipeline.process_scan`:
read, SUV, resample/crop, multi-atlas registration and fusion, weight maps, station statistics) into a cache
file in the output folder, then through train's inference (`train.inference.predict_scans`: the centroid patch per
station). Outputs: the N-stage and a station table on stdout, `prediction.json`, the fused station mask on the
original CT grid with its names and colour tables, the SUV, probability and atlas-agreement maps
(evaluate/viewer_outputs.py: they open in 3D Slicer and ITK-SNAP over the CT), for a DICOM CT the stations as
DICOM SEG referencing its series (`stations.seg.dcm`, evaluate/dicom_seg.py), a QA PNG, and per-step timings.
Without TotalSegmentator masks, preprocessing runs the `TotalSegmentator` command when it is installed.
`stage_scan` is the one path every scan takes (evaluate/batch_predict.py runs it over many).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.build_settings import BuildSettings, build_settings_for, expected_settings
from cache.dataset import DatasetConfig, load_dataset
from cache.describe import registration_check_text
from cache.devices import resolve_device
from cache.manifest import ManifestRow
from cache.reader import open_scan
from cache.schema import cache_file_name
from cache.stations import UNSTAGEABLE, stage_scans, stages_by_side, station_calls, station_names
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
    probability: float  # mean over the folds' models; NaN when the station is absent from the fused mask
    malignant: bool
    suv_max: float
    volume_ml: float
    probability_sd: float = 0.0  # standard deviation over the folds' models (0 for one model)


@dataclass(frozen=True)
class ScanPrediction:
    n_stage: int | None  # None: the tumour side is unknown and decides the stage
    n_stage_by_side: dict[str, int]
    tumor_side: str | None
    rule_set: str
    stations: tuple[StationPrediction, ...]
    timings_s: dict[str, float]
    folds: int = 1  # models averaged
    registration_qa: dict[str, float] = dataclasses.field(default_factory=dict)  # see registration_qa()
    registration_check: dict[str, float | str] = dataclasses.field(default_factory=dict)  # see registration_check()


@dataclass(frozen=True)
class Staging:
    """What stages scans: the folds' models (`train.inference.TrainedModel`), the model's dataset config (its
    preprocessing settings, the cache in the output folder) and build settings, the cutoff and the device."""

    models: tuple
    model_path: str
    config: DatasetConfig
    build: BuildSettings
    cutoff: float
    device: str


def _check_inputs(settings: PredictSettings) -> None:
    for flag in ("ct", "pet", "model"):
        value = getattr(settings, flag)
        if not value:
            raise PredictError(f"--{flag} is required")
        if not Path(value).exists():
            raise PredictError(f"--{flag} {value}: no such file or folder")
    if settings.totalseg and not Path(settings.totalseg).exists():
        raise PredictError(f"--totalseg {settings.totalseg}: no such file or folder (leave it out to run "
                           "TotalSegmentator, when installed)")


def _row(settings: PredictSettings) -> ManifestRow:
    side = None if settings.tumor_side == "unknown" else settings.tumor_side
    return ManifestRow(row=1, patient_id=PATIENT_ID, scan_id=SCAN_ID, ct=Path(settings.ct).resolve(),
                       pet=Path(settings.pet).resolve(),
                       totalseg=Path(settings.totalseg).resolve() if settings.totalseg else None, lesions=None,
                       tumor_side=side, n_clinical=None, n_pathological=None, stations_clinical=(),
                       stations_pathological=(), split_group="")


def _dataset(settings, model_dataset: str, out: Path) -> tuple[DatasetConfig, BuildSettings]:
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
    from preprocess.pipeline import RunContext, process_scan
    from preprocess.suv import SuvSettings

    context = RunContext(config, build, SuvSettings(), False, resolve_device(device).type,
                         file_digest(config.atlas_bank_path))
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    outcome = process_scan(row, context)
    if outcome.status == "failed":
        raise PredictError(f"preprocessing failed: {outcome.error}")
    return {k: v for k, v in outcome.timings_s.items() if k != "total"}


def stage_both_sides(calls: np.ndarray, side: str | None, rule_set: str) -> tuple[int | None, dict[str, int]]:
    """One scan's N-stage from its 17 station calls (None when the side is unknown and the sides differ), and
    the stage for each side, so that the user sees both."""
    stage = int(stage_scans(calls[None], [side], rule_set)[0])
    by_side = {s: int(v[0]) for s, v in stages_by_side(calls[None], rule_set).items()}
    return None if stage == UNSTAGEABLE else stage, by_side


def station_table_text(prediction: ScanPrediction) -> str:
    """The station table printed for the user: probability, status and SUVmax per station."""
    lines = [f"{'station':>7}  {'probability':>11}  {'status':>9}  {'SUVmax':>6}  {'volume ml':>9}"]
    for s in prediction.stations:
        if math.isnan(s.probability):
            lines.append(f"{s.name:>7}  {'-':>11}  {'absent':>9}  {'-':>6}  {'-':>9}")
            continue
        spread = f"  +-{s.probability_sd:.3f} over {prediction.folds} folds" if prediction.folds > 1 else ""
        lines.append(f"{s.name:>7}  {s.probability:>11.3f}  {'MALIGNANT' if s.malignant else 'benign':>9}  "
                     f"{s.suv_max:>6.2f}  {s.volume_ml:>9.1f}{spread}")
    return "\n".join(lines)


def n_stage_text(prediction: ScanPrediction) -> str:
    if prediction.n_stage is not None:
        return f"N-stage: N{prediction.n_stage} (tumour side {prediction.tumor_side or 'unknown'}, " \
               f"rule set {prediction.rule_set})"
    return (f"N-stage: depends on the tumour side, which is unknown: N{prediction.n_stage_by_side['R']} if right, "
            f"N{prediction.n_stage_by_side['L']} if left (rule set {prediction.rule_set}); pass --tumor-side")


def registration_qa(cache_path: Path) -> dict[str, float]:
    """The scan's registration QA from its cache file: the worst atlas' mean structure Dice after deformable
    registration and the largest folding fraction (share of voxels with Jacobian <= 0) over atlases."""
    import h5py

    from cache.schema import QC_GROUP

    dice, folding = [], []
    with h5py.File(cache_path, "r") as f:
        atlases = f.get(f"{QC_GROUP}/registration")
        for atlas in atlases.values() if atlases is not None else ():
            if "deformable" in atlas:
                dice.append(float(atlas["deformable"].attrs["dice_mean"]))
                folding.append(float(atlas["deformable"].attrs["folding_fraction"]))
    return {"dice_min": min(dice, default=math.nan), "folding_max": max(folding, default=math.nan)}


def registration_check(cache_path: Path) -> dict[str, float | str]:
    """The scan's registration check from its cache file (`/qc/registration_check`: driving and held-out
    structure Dice, Jacobian range, the preset's limits and `flags`); empty for files written before it."""
    import h5py

    from cache.schema import QC_REGISTRATION_CHECK_GROUP

    with h5py.File(cache_path, "r") as f:
        group = f.get(QC_REGISTRATION_CHECK_GROUP)
        return {} if group is None else {k: v if isinstance(v, str) else float(v) for k, v in group.attrs.items()}


def qa_flags(qa: dict[str, float], dice_floor: float = 0.7, check: dict[str, float | str] | None = None) -> str:
    """Words for a reader: 'low_dice' when an atlas matched the scan's structures poorly, 'folding' when a
    deformation folded, and the registration check's flags ('held_out_dice', 'jacobian'); empty when none."""
    flags = [name for name, bad in (("low_dice", qa["dice_min"] < dice_floor), ("folding", qa["folding_max"] > 0))
             if bad]
    flags += [f for f in str((check or {}).get("flags", "")).split() if f not in flags]
    return " ".join(flags)


def staging_for(settings, out: Path) -> Staging:
    """Models and preprocessing for `settings` (PredictSettings or BatchPredictSettings: model, dataset,
    atlas_bank, pet_is_suv, probability_cutoff, device), with the cache under `out`. A model bundle (.zip,
    train/bundle.py) is unpacked into `out/model` and refuses other preprocessing settings or atlas bank."""
    from train.predict import load_models

    device = resolve_device(settings.device).type
    if Path(settings.model).suffix != ".zip":
        models = tuple(load_models(Path(settings.model), device))
        config, build = _dataset(settings, models[0].settings.dataset, out)
        return Staging(models, str(settings.model), config, build, settings.probability_cutoff, device)
    from cache.checksums import file_digest
    from train.bundle import unpack_bundle

    bundle = unpack_bundle(Path(settings.model), out / "model")
    models = tuple(load_models(bundle.folder, device))
    config, build = _dataset(settings, str(bundle.dataset_config), out)
    bundle.check_inputs(expected_settings(build), file_digest(config.atlas_bank_path),
                        f"dataset {settings.dataset or 'of the bundle'} with atlas bank {config.atlas_bank_path}")
    return Staging(models, str(settings.model), config, build, settings.probability_cutoff, device)


def stage_scan(row: ManifestRow, staging: Staging, out: Path) -> ScanPrediction:
    """One scan through preprocessing, every fold's model (probabilities averaged) and the rule set; writes the
    viewer files, qa.png and prediction.json into `out`."""
    import torch

    from cache.reader import CacheReader
    from train.inference import predict_scans

    start, timings = time.perf_counter(), {}
    out.mkdir(parents=True, exist_ok=True)
    timings.update(preprocess_scan(row, staging.config, staging.build, staging.device))
    cache_path = staging.config.cache_dir / cache_file_name(row.patient_id, row.scan_id)
    reader = CacheReader([cache_path], expected_settings(staging.build))
    per_fold = timed(timings, "inference", lambda: np.stack([predict_scans(
        model, reader, [row.tumor_side], staging.config.rule_set, torch.device(staging.device),
        model.settings.inference_samples, model.settings.seed, scan_names=[str(row.ct)]).station_prob[0]
        for model in staging.models]))
    probabilities, spread = per_fold.mean(axis=0), per_fold.std(axis=0)
    status = station_calls(probabilities, staging.cutoff)
    with open_scan(cache_path) as scan:
        info = scan.info
        stations = tuple(
            StationPrediction(name, float(p), bool(call),
                              info.stations[name].suv_max if name in info.stations else float("nan"),
                              info.stations[name].volume_ml if name in info.stations else float("nan"), float(sd))
            for name, p, call, sd in zip(station_names(), probabilities, status, spread, strict=True))
        stage, by_side = stage_both_sides(status, row.tumor_side, staging.config.rule_set)
        agreement = [info.stations[n].vote_agreement if n in info.stations else math.nan for n in station_names()]
        files = timed(timings, "outputs", lambda: (
            write_viewer_outputs(out, read_image(row.ct, modality="CT"), info.grid, np.asarray(scan.station_labels),
                                 np.asarray(scan.suv), probabilities, np.array(agreement)),
            qa_overlay_figure(np.asarray(scan.ct), np.asarray(scan.suv), np.asarray(scan.station_labels), status,
                              f"{Path(row.ct).name}: N{stage if stage is not None else '?'}",
                              out / "qa.png", info.grid, probability=np.nan_to_num(probabilities))))[0]
    if Path(row.ct).is_dir():  # a DICOM CT: the stations as DICOM SEG referencing its series
        from evaluate.dicom_seg import write_station_seg

        timed(timings, "dicom_seg", lambda: write_station_seg(sitk.ReadImage(str(files.stations)), Path(row.ct),
                                                               out / "stations.seg.dcm"))
    timings["total"] = time.perf_counter() - start
    prediction = ScanPrediction(stage, by_side, row.tumor_side, staging.config.rule_set, stations, timings,
                                len(staging.models), registration_qa(cache_path), registration_check(cache_path))
    (out / "prediction.json").write_text(json.dumps(_json(prediction, staging), indent=1))
    return prediction


def _json(prediction: ScanPrediction, staging: Staging) -> dict:
    def number(value: float) -> float | None:
        return None if math.isnan(value) else round(float(value), 6)

    return {
        "n_stage": prediction.n_stage, "n_stage_by_side": prediction.n_stage_by_side,
        "tumor_side": prediction.tumor_side, "rule_set": prediction.rule_set,
        "probability_cutoff": staging.cutoff, "model": staging.model_path, "folds": prediction.folds,
        "registration_qa": {k: number(v) for k, v in prediction.registration_qa.items()},
        "registration_check": {k: v if isinstance(v, str) else number(v) if math.isfinite(v) else None
                               for k, v in prediction.registration_check.items()},
        "stations": [{"station": s.name, "probability": number(s.probability),
                      "probability_sd": number(s.probability_sd), "malignant": s.malignant,
                      "present": not math.isnan(s.probability), "suv_max": number(s.suv_max),
                      "volume_ml": number(s.volume_ml)} for s in prediction.stations],
        "timings_s": {k: round(v, 3) for k, v in prediction.timings_s.items()},
    }


def stage_one(settings: PredictSettings) -> ScanPrediction:
    """Stage the scan of `settings` and write its outputs (no printing): what `predict` and the command run."""
    _check_inputs(settings)
    start, load = time.perf_counter(), {}
    out = settings.output_dir
    staging = timed(load, "load_model", lambda: staging_for(settings, out))
    prediction = stage_scan(_row(settings), staging, out)
    timings = {**load, **prediction.timings_s, "total": time.perf_counter() - start}
    return dataclasses.replace(prediction, timings_s=timings)


def predict(ct: str | Path, pet: str | Path, model: str | Path, out: str | Path, totalseg: str | Path = "",
            tumor_side: str = "unknown", **options) -> ScanPrediction:
    """Stage one PET/CT from Python (a notebook): `model` a run folder (folds averaged) or one fold's folder;
    `options` any other field of PredictSettings (atlas_bank, probability_cutoff, device, ...)."""
    return stage_one(PredictSettings(ct=str(ct), pet=str(pet), model=str(model), out=str(out),
                                     totalseg=str(totalseg) if totalseg else "", tumor_side=tumor_side, **options))


def run_predict(settings: PredictSettings) -> int:
    """Stage one scan, write the outputs and print the stage and station table; returns the exit status (0)."""
    prediction = stage_one(settings)
    out = settings.output_dir
    print(n_stage_text(prediction))
    print(station_table_text(prediction))
    if prediction.registration_check:
        print(registration_check_text(prediction.registration_check))
    print("timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in prediction.timings_s.items()))
    print(f"outputs in {out}: prediction.json, stations.nii.gz (+ stations.ctbl for 3D Slicer, stations.itksnap.txt "
          f"for ITK-SNAP), suv.nii.gz, probability.nii.gz, agreement.nii.gz, qa.png; cache in {out / 'cache'}")
    return 0
