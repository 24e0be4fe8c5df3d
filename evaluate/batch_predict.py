"""`lnstage-predict --input DIR_OR_MANIFEST --out DIR --model runs/X/ts1`: stage many scans with every fold's model.

Input: a manifest CSV (cache/README.md's columns; labels are not needed) or a folder with one subfolder per scan
holding `ct.nii.gz` (or a `ct/` DICOM folder), `pet.nii.gz` (SUV) or a `pet_dicom/` / `pet/` DICOM folder, and
optionally `totalseg.nii.gz` (without it, preprocessing runs TotalSegmentator when installed). Each scan goes
through `evaluate.predict.stage_scan` into `<out>/<patient>__<scan>/`; the folds' probabilities are averaged
and their spread reported. A scan that fails is reported (status `failed` and the error in the summary, the
traceback in the log) and the rest are done; the exit status is then 1.

`<out>/summary.csv`, one row per scan: patient_id, scan_id, status (ok|failed), n_stage (empty when the unknown
tumour side decides), n_stage_if_R, n_stage_if_L, folds, p_<station> (mean probability, empty when absent),
sd_<station> (spread over folds), suvmax_<station>, positive (malignant stations), qa_dice_min,
qa_folding_max, qa_flags (low_dice, folding, and the registration check's held_out_dice, jacobian), seconds, error.
"""

from __future__ import annotations

import csv
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from cache.devices import Device
from cache.manifest import ManifestRow
from cache.stations import station_names

CT_NAMES = ("ct.nii.gz", "ct.nii", "ct")
PET_NAMES = ("pet.nii.gz", "pet.nii", "pet_dicom", "pet")
TOTALSEG_NAMES = ("totalseg.nii.gz", "totalseg")


class BatchInputError(ValueError):
    """An input folder or manifest that names no scans; the message says what was expected."""


@dataclass(frozen=True)
class BatchPredictSettings:
    """Many scans, every fold's model: where they are, which model, where the outputs go."""

    input: str = field(default="", metadata={"help": "manifest CSV, or a folder of scan folders (ct, pet[, totalseg])",
                                             "args": ("--input", "-i")})
    out: str = field(default="", metadata={"help": "output folder: summary.csv and one folder per scan",
                                           "args": ("--out", "-o")})
    model: str = field(default="", metadata={"help": "run folder (its folds averaged) or one fold's folder"})
    atlas_bank: str = field(default="", metadata={"help": "atlas bank folder (empty: the model's dataset's bank)"})
    dataset: str = field(
        default="", metadata={"help": "dataset config whose preprocessing settings apply (empty: the model's)"}
    )
    pet_is_suv: bool = field(default=True, metadata={"help": "a NIfTI/NRRD/MHA PET holds SUV already"})
    probability_cutoff: float = field(default=0.5, metadata={"help": "a station is malignant at p >= this"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})


@dataclass(frozen=True)
class ScanOutcome:
    """One scan's result: its prediction, or the error that stopped it."""

    row: ManifestRow
    prediction: object | None  # evaluate.predict.ScanPrediction
    seconds: float
    error: str = ""


def _first(folder: Path, names: tuple[str, ...]) -> Path | None:
    return next((folder / n for n in names if (folder / n).exists()), None)


def _resolved(path: Path | None) -> Path | None:
    return None if path is None else path.resolve()


def folder_rows(folder: Path) -> list[ManifestRow]:
    """One row per subfolder holding a CT and a PET (patient id = scan id = the subfolder's name)."""
    rows = []
    for scan in sorted(p for p in folder.iterdir() if p.is_dir()):
        ct, pet = _first(scan, CT_NAMES), _first(scan, PET_NAMES)
        if ct is None or pet is None:
            continue
        rows.append(ManifestRow(row=len(rows) + 1, patient_id=scan.name, scan_id=scan.name, ct=ct.resolve(),
                                pet=pet.resolve(), totalseg=_resolved(_first(scan, TOTALSEG_NAMES)), lesions=None,
                                tumor_side=None, n_clinical=None, n_pathological=None, stations_clinical=(),
                                stations_pathological=(), split_group=""))
    if not rows:
        raise BatchInputError(f"--input {folder}: no subfolder holds a CT ({' or '.join(CT_NAMES)}) and a PET "
                              f"({' or '.join(PET_NAMES)}); pass such folders or a manifest CSV")
    return rows


def input_rows(path: Path) -> list[ManifestRow]:
    """The scans of a manifest CSV (paths relative to its folder) or of a folder of scan folders."""
    from cache.manifest import read_manifest

    if path.is_dir():
        return folder_rows(path)
    if not path.is_file():
        raise BatchInputError(f"--input {path}: no such manifest or folder")
    manifest = read_manifest(path, path.parent, check_files=False)
    manifest.raise_issues()
    return list(manifest.rows)


def run_batch(rows: list[ManifestRow], staging, out: Path, log=print) -> list[ScanOutcome]:
    """Every row through `stage_scan`; a failure is logged with its traceback and the next scan goes on."""
    from evaluate.predict import stage_scan

    outcomes = []
    for k, row in enumerate(rows, 1):
        start = time.perf_counter()
        try:
            prediction = stage_scan(row, staging, out / row.key)
            outcomes.append(ScanOutcome(row, prediction, time.perf_counter() - start))
            log(f"[{k}/{len(rows)}] {row.key}: N{prediction.n_stage if prediction.n_stage is not None else '?'} "
                f"in {outcomes[-1].seconds:.1f} s")
        except Exception as error:  # noqa: BLE001 -- one scan's failure is reported (summary, log) and the rest run
            log(f"[{k}/{len(rows)}] {row.key}: FAILED: {type(error).__name__}: {error}\n{traceback.format_exc()}")
            outcomes.append(ScanOutcome(row, None, time.perf_counter() - start, f"{type(error).__name__}: {error}"))
    return outcomes


def _number(value: float, digits: int = 6) -> str:
    return "" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def summary_rows(outcomes: list[ScanOutcome]) -> list[dict[str, str]]:
    """The summary table (module docstring), one dict per scan."""
    from evaluate.predict import qa_flags

    names, rows = station_names(), []
    for outcome in outcomes:
        row = {"patient_id": outcome.row.patient_id, "scan_id": outcome.row.scan_id,
               "status": "ok" if outcome.prediction is not None else "failed"}
        p = outcome.prediction
        if p is not None:
            row.update(n_stage="" if p.n_stage is None else str(p.n_stage), n_stage_if_R=str(p.n_stage_by_side["R"]),
                       n_stage_if_L=str(p.n_stage_by_side["L"]), folds=str(p.folds))
            for s in p.stations:
                row[f"p_{s.name}"], row[f"sd_{s.name}"] = _number(s.probability), _number(s.probability_sd)
                row[f"suvmax_{s.name}"] = _number(s.suv_max, 3)
            row.update(positive=" ".join(s.name for s in p.stations if s.malignant),
                       qa_dice_min=_number(p.registration_qa["dice_min"], 4),
                       qa_folding_max=_number(p.registration_qa["folding_max"], 6),
                       qa_flags=qa_flags(p.registration_qa, check=p.registration_check))
        row.update(seconds=f"{outcome.seconds:.1f}", error=outcome.error)
        rows.append(row)
    columns = ["patient_id", "scan_id", "status", "n_stage", "n_stage_if_R", "n_stage_if_L", "folds",
               *[f"{kind}_{n}" for kind in ("p", "sd", "suvmax") for n in names], "positive", "qa_dice_min",
               "qa_folding_max", "qa_flags", "seconds", "error"]
    return [{c: r.get(c, "") for c in columns} for r in rows]


def write_summary(path: Path, outcomes: list[ScanOutcome]) -> Path:
    rows = summary_rows(outcomes)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_batch_predict(settings: BatchPredictSettings) -> int:
    """Stage every scan of `--input`; returns 0, or 1 when any scan failed (named in the summary)."""
    from evaluate.predict import staging_for

    if not settings.out:
        raise BatchInputError("--out is required: the folder for summary.csv and one folder per scan")
    out = Path(settings.out)
    rows = input_rows(Path(settings.input))
    staging = staging_for(settings, out)
    print(f"{len(rows)} scan(s), {len(staging.models)} fold model(s) from {settings.model}")
    outcomes = run_batch(rows, staging, out)
    summary = write_summary(out / "summary.csv", outcomes)
    failed = [o.row.key for o in outcomes if o.prediction is None]
    print(f"summary: {summary}; {len(outcomes) - len(failed)} staged, {len(failed)} failed"
          + (f" ({', '.join(failed)}; see the error column and the log)" if failed else ""))
    return 1 if failed else 0
