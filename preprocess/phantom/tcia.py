"""`python -m preprocess.phantom.tcia --dataset demo-dx`: a phantom cohort as a TCIA download, then imported.

Plays Lung-PET-CT-Dx's role in the demo study: another scanner (the `[phantom]` table of the dataset config sets
the PET grid, extra PET noise and thinner CT slices), N-stage only, every image a DICOM series. Under the dataset
root it writes `tcia/<PatientID>/<study>/<series>/` and `clinical.csv` as TCIA ships them, then runs
`python -m preprocess.import_tcia` on them (manifest.csv, series/ links) and files each scan's TotalSegmentator
stand-in as `totalseg/<scan_id>.nii.gz`, where the importer picks masks up.

The tree holds what the importer must handle, patient by patient (index modulo 6): a plain PET/CT study (0), an
extra CT-only study (1), CT and PET in two studies of one frame of reference (2) or of one day (3), oddly named
series folders (4), a second PET/CT months later (5). Beyond `patients`, one more patient is missing from the
clinical table, and patient 1 gets a study with two CT series on the PET's frame of reference (ambiguous) and a
PET-only study. None of these extras changes the N mix of the imported patients.
"""

from __future__ import annotations

import csv
import datetime as dt
import os
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.uid import generate_uid

from cache.cli import Command, Preset, split_table
from cache.dataset import load_dataset, stage_overrides
from cache.run_log import progress
from cache.settings import values_from_mapping
from preprocess.import_tcia import ImportReport, ImportSettings, import_tcia
from preprocess.phantom.cohort import LABEL_STREAM, PATIENT_STREAM
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.dicom_ct import thin_slices, write_ct_series
from preprocess.phantom.dicom_pet import PetAcquisition, encode_slices, write_pet_series
from preprocess.phantom.labels import StageLabels, draw_stage_labels
from preprocess.phantom.pet import add_pet_noise
from preprocess.phantom.scan import SimulatedScan, simulate_scan
from preprocess.phantom.settings import PhantomSettings
from preprocess.phantom.writer import write_totalseg

TREE, CLINICAL, MASKS, LOG = "tcia", "clinical.csv", "totalseg", "phantom-tcia.log"
KNOWN_ENTRIES = (TREE, CLINICAL, MASKS, LOG, "series", "manifest.csv", "import_tcia.log", "staged-masks", "cache")
NOISE_STREAM, MIX_STREAM = 10, 11  # random streams of their own: the demo cohort's streams stay as they are
CLINICAL_COLUMNS = ("NewPatientID", "Sex", "Age", "T-Stage", "N-Stage", "M-Stage")


@dataclass(frozen=True)
class TciaTreeSettings:
    """The scanner and cohort mix of a TCIA-like phantom tree (with PhantomSettings for the rest)."""

    dataset: str = field(default="demo-dx", metadata={"help": "dataset config: its root, [phantom], [import_tcia]"})
    ct_slice_mm: float = field(default=0.0, metadata={"help": "CT slice spacing, mm (0: the voxel size)"})
    pet_extra_noise: float = field(
        default=0.0, metadata={"help": "SD of PET noise added per sqrt(SUV), on top of the scanner's 0.10-0.18"}
    )
    n_stage_mix: tuple[float, ...] = field(
        default=(), metadata={"help": "N0-N3 shares; the cohort holds them exactly (empty: drawn per patient)",
                              "nargs": 4, "type": float},
    )

    def __post_init__(self) -> None:
        if self.ct_slice_mm < 0.0 or self.pet_extra_noise < 0.0:
            raise ValueError(f"ct_slice_mm and pet_extra_noise must be >= 0, got {self.ct_slice_mm}, "
                             f"{self.pet_extra_noise}")
        if self.n_stage_mix and (len(self.n_stage_mix) != 4 or min(self.n_stage_mix) < 0 or not sum(self.n_stage_mix)):
            raise ValueError(f"n_stage_mix must be 4 non-negative shares (N0-N3), got {self.n_stage_mix}")


def stage_counts(mix: tuple[float, ...], patients: int) -> list[int]:
    """Patients per N-stage: the mix scaled to `patients`, rounded by largest remainder (sums to `patients`)."""
    exact = np.asarray(mix, dtype=np.float64) / sum(mix) * patients
    counts = np.floor(exact).astype(int)
    for k in np.argsort(-(exact - counts), kind="stable")[: patients - counts.sum()]:
        counts[k] += 1
    return [int(c) for c in counts]


def draw_labels(phantom: PhantomSettings, index: int, n_stage: int | None) -> StageLabels:
    """The phantom's labels of patient `index`, drawn until they have `n_stage` (the model's labels given N)."""
    rng = np.random.default_rng([phantom.seed, LABEL_STREAM, index])
    labels = draw_stage_labels(rng)
    while n_stage is not None and labels.n_stage != n_stage:
        labels = draw_stage_labels(rng)
    return labels


def draw_scan(phantom: PhantomSettings, tree: TciaTreeSettings, index: int, labels: StageLabels) -> SimulatedScan:
    """Patient `index` simulated with this scanner's PET grid and extra noise (SUV on the PET grid)."""
    grid = field_grid(phantom.extent_mm, phantom.spacing_mm)
    rng = np.random.default_rng([phantom.seed, PATIENT_STREAM, index])
    scan = simulate_scan(rng, grid, labels, phantom.pet_factor, dicom_pet=False, day=index, settings=phantom)
    if tree.pet_extra_noise > 0:
        noise_rng = np.random.default_rng([phantom.seed, NOISE_STREAM, index])
        scan = replace(scan, suv=add_pet_noise(scan.suv, tree.pet_extra_noise, noise_rng))
    return scan


@dataclass(frozen=True)
class StudyPlan:
    """One study folder to write: which series, under which names."""

    folder: str
    uid: str
    frame: str
    when: dt.datetime
    series: tuple[tuple[str, str], ...]  # (modality "CT"|"PT", series folder name)


EXTRA_STUDIES = (  # patient 1 only: an ambiguous study and a PET-only one
    ("ambiguous", 200, (("CT", "2.000000-CT soft-1"), ("CT", "3.000000-CT lung-2"), ("PT", "4.000000-PET-3"))),
    ("pet-only", 260, (("PT", "4.000000-PET-4"),)),
)


def _uid(seed: str, part: str) -> str:
    return generate_uid(entropy_srcs=[seed, part])


def _study_folder(when: dt.datetime, what: str) -> str:
    """A study folder named as the NBIA Data Retriever names them: date, description, a number."""
    return f"{when:%m-%d-%Y}-NA-{what}"


def _studies(index: int, when: dt.datetime, seed: str) -> list[StudyPlan]:
    """The studies of patient `index` (see the module docstring for the variants)."""
    variant = index % 6
    frame = _uid(seed, "frame")
    plain = [("CT", "2.000000-CT 1.25mm-11111"), ("PT", "3.000000-PET AC-22222")]
    if variant == 4:
        plain = [("CT", "Series A"), ("PT", "1.000000-CT THORAX-33333")]  # folder names say nothing or mislead
    if variant in (2, 3):
        other = frame if variant == 2 else _uid(seed, "frame-pet")
        return [StudyPlan(_study_folder(when, "CT-44444"), _uid(seed, "study-ct"), frame, when, (plain[0],)),
                StudyPlan(_study_folder(when, "PET-55555"), _uid(seed, "study-pet"), other, when, (plain[1],))]
    studies = [StudyPlan(_study_folder(when, "PET-CT-66666"), _uid(seed, "study"), frame, when, tuple(plain))]
    if variant == 1:
        later = when + dt.timedelta(days=40)
        studies.append(StudyPlan(_study_folder(later, "CT CHEST-77777"), _uid(seed, "study-ct-only"),
                                 _uid(seed, "frame-ct-only"), later, (("CT", "2.000000-CHEST-77777"),)))
    if variant == 5:
        later = when + dt.timedelta(days=120)
        studies.append(StudyPlan(_study_folder(later, "PET-CT-88888"), _uid(seed, "study-followup"),
                                 _uid(seed, "frame-followup"), later, tuple(plain)))
    if index == 1:
        for name, days, series in EXTRA_STUDIES:
            extra = when + dt.timedelta(days=days)
            studies.append(StudyPlan(_study_folder(extra, name), _uid(seed, name), frame, extra, series))
    return studies


def write_patient(out: Path, dicom_id: str, scan: SimulatedScan, tree: TciaTreeSettings, studies: list[StudyPlan],
                  spacing_mm: float) -> None:
    """Every study of one patient as DICOM series under out/tcia/<dicom_id>/."""
    ct, ct_grid = scan.ct_hu, scan.grid
    if tree.ct_slice_mm and tree.ct_slice_mm != spacing_mm:
        ct, ct_grid = thin_slices(scan.ct_hu, scan.grid, tree.ct_slice_mm)
    stored, slopes = encode_slices(scan.suv, scan.acquisition)
    for study in studies:
        shift = study.when - scan.acquisition.series_start
        acquisition = PetAcquisition(scan.acquisition.weight_kg, scan.acquisition.dose_bq,
                                     scan.acquisition.injection + shift, study.when)
        for number, (modality, name) in enumerate(study.series, start=1):
            folder = out / TREE / dicom_id / study.folder / name
            seed = f"{dicom_id}/{study.uid}/{number}"
            if modality == "CT":
                write_ct_series(folder, ct, ct_grid, dicom_id, study.when, seed, study.uid, study.frame, number,
                                "CT thorax (preprocess.phantom.tcia)")
            else:
                write_pet_series(folder, stored, slopes, scan.pet_grid, acquisition, dicom_id, seed, study.uid,
                                 study.frame)


def _prepare(out: Path) -> None:
    """Clear an earlier tree's outputs; refuse a folder that holds other things."""
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in KNOWN_ENTRIES)
        if foreign:
            raise FileExistsError(f"{out} holds {', '.join(foreign[:5])}, which no TCIA-like phantom wrote; choose "
                                  "an empty or new folder")
    for name in (TREE, MASKS, "staged-masks"):
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def write_tree(phantom: PhantomSettings, tree: TciaTreeSettings) -> Path:
    """The DICOM tree, the clinical table and staged masks (staged-masks/<PatientID>.nii.gz) under phantom.out."""
    out = Path(phantom.out)
    if phantom.atlases:
        raise ValueError("a TCIA download holds no atlas bank: set atlases = 0 and point the dataset's atlas_bank "
                         "at another cohort's bank")
    _prepare(out)
    stages = [None] * phantom.patients
    if tree.n_stage_mix:
        counts = stage_counts(tree.n_stage_mix, phantom.patients)
        stages = list(np.random.default_rng([phantom.seed, MIX_STREAM]).permutation(np.repeat(np.arange(4), counts)))
    rows = []
    for i in progress(range(phantom.patients + 1), desc="TCIA-like patients", unit="patient"):
        dicom_id = f"Phantom_Dx-A{i + 1:04d}"
        labels = draw_labels(phantom, i, None if i == phantom.patients else int(stages[i]))
        scan = draw_scan(phantom, tree, i, labels)
        when = scan.acquisition.series_start
        n_cell = f"N{labels.n_stage}" if i % 2 else str(labels.n_stage)  # both spellings occur in clinical tables
        write_patient(out, dicom_id, scan, tree, _studies(i, when, dicom_id), phantom.spacing_mm)
        write_totalseg(scan.totalseg, scan.grid, out / "staged-masks" / f"{dicom_id}.nii.gz")
        if i < phantom.patients:  # the last patient is missing from the clinical table
            rows.append({"NewPatientID": f"A{i + 1:04d}", "Sex": "O", "Age": str(50 + i % 30), "T-Stage": "2",
                         "N-Stage": n_cell, "M-Stage": "0"})
    with open(out / CLINICAL, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=CLINICAL_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / TREE / "LICENSE.txt").write_text("synthetic data, CC0-1.0 (not a DICOM file)\n", encoding="utf-8")
    return out


def file_masks(out: Path, report: ImportReport) -> None:
    """Move each imported scan's staged mask to totalseg/<scan_id>.nii.gz (its CT link names the patient)."""
    (out / MASKS).mkdir(exist_ok=True)
    tree = (out / TREE).resolve()
    for row in report.rows:
        patient_folder = (out / row["ct"]).resolve().relative_to(tree).parts[0]
        os.replace(out / "staged-masks" / f"{patient_folder}.nii.gz", out / MASKS / f"{row['scan_id']}.nii.gz")


def generate_tcia_cohort(phantom: PhantomSettings, tree: TciaTreeSettings, importer: ImportSettings) -> ImportReport:
    """Write the tree, import it, file the masks and import again (the manifest then names the masks)."""
    out = Path(phantom.out)
    write_tree(phantom, tree)
    importer = replace(importer, root=str(out / TREE), clinical=str(out / CLINICAL), out=str(out / "manifest.csv"),
                       dataset=tree.dataset, totalseg_dir=MASKS)
    file_masks(out, import_tcia(importer))
    return import_tcia(importer)


def tcia_presets(given: Mapping[str, Any]) -> list[Preset]:
    """The dataset's root as `out`, then its `[phantom]` table (fields of both settings classes)."""
    dataset = given.get("dataset", TciaTreeSettings.dataset)
    return [Preset(f"dataset {dataset!r} root", PhantomSettings, {"out": load_dataset(dataset).root}),
            *split_table((PhantomSettings, TciaTreeSettings), stage_overrides(dataset, "phantom"),
                         f"dataset {dataset!r} [phantom]")]


def generate(phantom: PhantomSettings, tree: TciaTreeSettings) -> int:
    """Write and import the cohort with the dataset's `[import_tcia]` table; print the import's summary."""
    table = stage_overrides(tree.dataset, "import_tcia")
    importer = ImportSettings(**values_from_mapping(ImportSettings, table, f"dataset {tree.dataset!r} [import_tcia]"))
    report = generate_tcia_cohort(phantom, tree, importer)
    print("\n".join(report.lines()))
    print(f"TCIA-like cohort and manifest written to {phantom.out}")
    return 0


COMMAND = Command("python -m preprocess.phantom.tcia", "Write a TCIA-like phantom download and import it.",
                  (PhantomSettings, TciaTreeSettings), generate, presets=tcia_presets,
                  log_file=lambda phantom, tree: Path(phantom.out) / LOG)


main = COMMAND.run  # Generate and import; failures raise
cli = COMMAND.cli  # for python -m: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
