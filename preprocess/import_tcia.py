"""`python -m preprocess.import_tcia ROOT --clinical FILE --out manifest.csv`: a manifest from a TCIA download.

Walks ROOT (patient / study / series folders of DICOM files, as the NBIA Data Retriever writes them), tells CT
from PET by each file's header (never by folder names), pairs one CT with one PET per study (same
StudyInstanceUID, else same FrameOfReferenceUID, else same StudyDate; an ambiguous choice is refused with the
reason), takes each patient's N-stage from the clinical table TCIA ships (CSV or XLSX; which columns hold the
patient id and the N-stage is set in the dataset config's `[import_tcia]` table), and writes the manifest.

The manifest holds pseudonymous ids only (`dx-0001`, `dx-0001-s1`): no DICOM name, UID or date, and no source
folder name (TCIA folder names carry dates or UIDs). Its `ct` and `pet` columns point at links
`series/<scan_id>/{ct,pet}` beside the manifest, which lead to the series folders. Write the manifest into the
dataset root. Masks a user made with TotalSegmentator are picked up from `<totalseg_dir>/<scan_id>.nii.gz`.
"""

from __future__ import annotations

import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pydicom
from pydicom.errors import InvalidDicomError

from cache.cli import Command, Preset
from cache.dataset import load_dataset, stage_overrides
from cache.manifest import LABEL_COLUMNS, write_manifest
from cache.run_log import progress
from cache.settings import SettingsError

HEADER_TAGS = ("PatientID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID", "Modality", "StudyDate",
               "StudyTime", "ImageType", "CorrectedImage", "SliceThickness")
LINKS = "series"
N_STAGE = re.compile(r"^\s*(?:c|p)?N?([0-3])[a-c]?\s*$", re.IGNORECASE)
MISSING_N = {"", "x", "nx", "nan", "na", "n/a", "unknown"}


class TciaImportError(ValueError):
    """A download or clinical table that cannot be imported; the message names the file and what to do."""


@dataclass(frozen=True)
class ImportSettings:
    """One import of a TCIA download; column names usually come from the dataset config's [import_tcia] table."""

    root: str = field(default="", metadata={"help": "TCIA download folder (patient/study/series folders)",
                                            "args": ["root"]})
    clinical: str = field(default="", metadata={"help": "the collection's clinical table (CSV or XLSX)"})
    out: str = field(default="manifest.csv", metadata={"help": "manifest to write (in the dataset root)"})
    dataset: str = field(default="LungPETCTDx", metadata={"help": "dataset config: [import_tcia] and label_column"})
    patient_column: str = field(default="", metadata={"help": "clinical table column holding the patient id"})
    n_stage_column: str = field(default="", metadata={"help": "clinical table column holding the N-stage"})
    patient_id_prefix: str = field(
        default="", metadata={"help": "prefix that turns a table id into the DICOM PatientID (e.g. 'Lung_Dx-')"}
    )
    sheet: str = field(default="", metadata={"help": "XLSX sheet to read (empty: the first)"})
    pseudonym_prefix: str = field(default="dx", metadata={"help": "manifest ids are <prefix>-0001, <prefix>-0001-s1"})
    ct_choice: Literal["refuse", "thinnest"] = field(
        default="refuse", metadata={"help": "several CT series could pair with a PET (e.g. two reconstructions): "
                                            "refuse the study, or take the CT with the thinnest slices"}
    )
    studies_per_patient: Literal["first", "all"] = field(
        default="first", metadata={"help": "import the earliest paired study of a patient, or every paired study"}
    )
    totalseg_dir: str = field(
        default="totalseg", metadata={"help": "folder (beside the manifest) of masks named <scan_id>.nii.gz"}
    )


@dataclass(frozen=True)
class Series:
    """One DICOM series found under the root (headers only)."""

    patient: str
    study: str
    uid: str
    frame: str
    modality: str
    date: str
    time: str
    slice_mm: float  # SliceThickness; inf when the header has none
    folder: Path
    role: str  # "CT", "PT", or why it is not a candidate


@dataclass(frozen=True)
class Pair:
    ct: Series
    pet: Series
    rule: str  # "same study", "same frame of reference", "same day"


@dataclass
class ImportReport:
    """What the import found; `lines()` is the summary printed at the end."""

    files: int = 0
    not_dicom: int = 0
    series: Counter = field(default_factory=Counter)
    pairs: list[Pair] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (study folder, reason)
    no_n_stage: list[tuple[str, str]] = field(default_factory=list)  # (DICOM PatientID, reason)
    rows: list[dict[str, str]] = field(default_factory=list)

    def lines(self) -> list[str]:
        rules = Counter(p.rule for p in self.pairs)
        out = [f"files read: {self.files} ({self.not_dicom} not DICOM); series: "
               + ", ".join(f"{k} {v}" for k, v in sorted(self.series.items())),
               f"studies paired: {len(self.pairs)} (" + ", ".join(f"{k} {v}" for k, v in sorted(rules.items())) + ")",
               f"studies skipped: {len(self.skipped)}"]
        out += [f"  {folder}: {reason}" for folder, reason in self.skipped]
        out.append(f"patients without an N-stage (left out): {len(self.no_n_stage)}")
        out += [f"  {patient}: {reason}" for patient, reason in self.no_n_stage]
        out.append(f"manifest rows written: {len(self.rows)}")
        return out


def _role(header: pydicom.Dataset) -> str:
    modality = str(header.get("Modality", ""))
    image_type = [str(v).upper() for v in header.get("ImageType", [])]
    if modality == "CT" and "LOCALIZER" in image_type:
        return "CT localizer"
    if modality == "PT" and "CorrectedImage" in header and "ATTN" not in list(header.CorrectedImage):
        return "PT without attenuation correction"
    return modality if modality in ("CT", "PT") else f"{modality or 'no modality'} (not CT or PET)"


def scan_headers(root: Path, report: ImportReport) -> list[Series]:
    """Every series under `root`, from one header read per file; a series split over folders, or sharing its
    folder with another series of its modality, is skipped (the series reader reads one folder by modality)."""
    found: dict[str, Series] = {}
    folders: dict[str, set[Path]] = defaultdict(set)
    files = [Path(folder) / name for folder, _, names in sorted(os.walk(root)) for name in sorted(names)]
    report.files = len(files)
    for path in progress(files, desc="DICOM headers", unit="file"):
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=list(HEADER_TAGS))
        except InvalidDicomError:  # a licence text, a spreadsheet: counted, not an error
            report.not_dicom += 1
            continue
        uid = str(header.get("SeriesInstanceUID", ""))
        folders[uid].add(path.parent)
        if uid not in found:
            found[uid] = Series(str(header.get("PatientID", "")), str(header.get("StudyInstanceUID", "")), uid,
                                str(header.get("FrameOfReferenceUID", "")), str(header.get("Modality", "")),
                                str(header.get("StudyDate", "")), str(header.get("StudyTime", "")),
                                float(header.get("SliceThickness") or "inf"), path.parent, _role(header))
    per_folder = Counter((s.folder, s.role) for s in found.values())
    series = []
    for uid, s in found.items():
        report.series[s.role] += 1
        if len(folders[uid]) > 1:
            report.skipped.append((_where(s.folder, root), f"a {s.role} series spread over {len(folders[uid])} "
                                   "folders; the reader reads one folder per series: move its files together"))
        elif s.role in ("CT", "PT") and per_folder[(s.folder, s.role)] > 1:
            report.skipped.append((_where(s.folder, root), f"{per_folder[(s.folder, s.role)]} {s.role} series in "
                                   "one folder; the reader cannot tell them apart: give each its own folder"))
        elif s.role in ("CT", "PT"):
            series.append(s)
    return series


def _where(folder: Path, root: Path) -> str:
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def _study_folder(series: list[Series], root: Path) -> str:
    """The folder of a study's series (the parent of its series folders), relative to the root."""
    return _where(Path(os.path.commonpath([s.folder.parent for s in series])), root)


def _thinnest(pairs: list[tuple[Series, Series]]) -> list[tuple[Series, Series]]:
    """The pairs whose CT has the thinnest slices (ct_choice = "thinnest")."""
    thinnest = min(c.slice_mm for c, _ in pairs)
    return [(c, p) for c, p in pairs if c.slice_mm == thinnest]


def _choose(cts: list[Series], pets: list[Series], ct_choice: str) -> Pair | str:
    """The one CT/PET pair of a study (narrowed to a shared frame of reference when several, then to the thinnest
    CT if `ct_choice` says so), or why not."""
    candidates = [(c, p) for c in cts for p in pets]
    if len(candidates) > 1:
        candidates = [(c, p) for c, p in candidates if c.frame and c.frame == p.frame]
    if len(candidates) > 1 and ct_choice == "thinnest":
        candidates = _thinnest(candidates)
    if len(candidates) == 1:
        return Pair(*candidates[0], "same study")
    return (f"ambiguous: {len(cts)} CT and {len(pets)} PET series, {len(candidates)} CT/PET combinations share a "
            f"frame of reference{_AMBIGUOUS_HELP[ct_choice]}")


_AMBIGUOUS_HELP = {
    "refuse": "; remove the series that are not the staging PET/CT from the download, or set ct_choice = thinnest",
    "thinnest": " and the thinnest CT slices; remove the series that are not the staging PET/CT from the download",
}


def _pair_leftover(pet: Series, cts: list[Series], ct_choice: str) -> Pair | str | None:
    """A PET of a study without CT paired with a CT of another study: same frame of reference, else same day."""
    for rule, match in (("same frame of reference", lambda c: c.frame and c.frame == pet.frame),
                        ("same day", lambda c: c.date and c.date == pet.date)):
        found = [(c, pet) for c in cts if match(c)]
        if len(found) > 1 and ct_choice == "thinnest":
            found = _thinnest(found)
        if len(found) == 1:
            return Pair(*found[0], rule)
        if len(found) > 1:
            return (f"ambiguous: its PET has {len(found)} CT series of other studies with its {rule[5:]}"
                    + _AMBIGUOUS_HELP[ct_choice])
    return None


def pair_patient(series: list[Series], root: Path, report: ImportReport, ct_choice: str = "refuse") -> list[Pair]:
    """The CT/PET pairs of one patient, earliest study first; every study not paired is reported with why."""
    studies: dict[str, list[Series]] = defaultdict(list)
    for s in series:
        studies[s.study].append(s)
    pairs, lone_ct, lone_pt = [], [], []
    for members in sorted(studies.values(), key=lambda m: (m[0].date, m[0].time)):
        cts, pets = [s for s in members if s.role == "CT"], [s for s in members if s.role == "PT"]
        if cts and pets:
            chosen = _choose(cts, pets, ct_choice)
            if isinstance(chosen, Pair):
                pairs.append(chosen)
            else:
                report.skipped.append((_study_folder(members, root), chosen))
        else:
            (lone_ct if cts else lone_pt).append(members)
    used = set()
    for members in lone_pt:
        chosen = _pair_leftover(members[0], [c for m in lone_ct for c in m if c.uid not in used], ct_choice)
        if isinstance(chosen, Pair):
            pairs.append(chosen)
            used.add(chosen.ct.uid)
        else:
            reason = chosen or "PET only: no CT series in this study, none of another study with its frame of " \
                               "reference or day"
            report.skipped.append((_study_folder(members, root), reason))
    for members in lone_ct:
        if not any(s.uid in used for s in members):
            report.skipped.append((_study_folder(members, root), "CT only: no PET series in this study, none of "
                                   "another study with its frame of reference or day"))
    return sorted(pairs, key=lambda p: (p.pet.date, p.pet.time))


def read_clinical(settings: ImportSettings) -> dict[str, set[str]]:
    """DICOM PatientID -> the N-stage cells (raw text) of its rows in the clinical table."""
    path = Path(settings.clinical)
    for name in ("patient_column", "n_stage_column"):
        if not getattr(settings, name):
            raise SettingsError(f"{name} is not set: put it in the [import_tcia] table of the dataset config "
                                f"{settings.dataset!r} or pass --{name.replace('_', '-')}")
    if not settings.clinical or not path.is_file():
        raise TciaImportError(f"clinical table {settings.clinical!r} not found; pass the CSV or XLSX TCIA ships with "
                              "the collection with --clinical")
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        table = pd.read_excel(path, sheet_name=settings.sheet or 0, dtype=str, keep_default_na=False)
    else:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    table.columns = [str(c).strip() for c in table.columns]
    for column in (settings.patient_column, settings.n_stage_column):
        if column not in table.columns:
            raise TciaImportError(f"{path}: no column {column!r} (columns: {', '.join(table.columns)}); set the "
                               f"column names in the [import_tcia] table of dataset {settings.dataset!r}")
    cells: dict[str, set[str]] = defaultdict(set)
    for patient, n in zip(table[settings.patient_column], table[settings.n_stage_column], strict=True):
        patient = str(patient).strip()
        if patient:
            prefix = settings.patient_id_prefix
            cells[patient if patient.startswith(prefix) else prefix + patient].add(str(n).strip())
    return dict(cells)


def parse_n_stage(cells: set[str] | None) -> int | str:
    """0-3 from a patient's cells ('N2', '2', 'cN2a', ...); else why they give no N-stage."""
    if not cells:
        return "not in the clinical table"
    if len(cells) > 1:
        return f"rows of the clinical table disagree: {', '.join(map(repr, sorted(cells)))}"
    text = next(iter(cells))
    match = N_STAGE.match(text)
    if match:
        return int(match.group(1))
    if text.strip().lower() in MISSING_N:
        return f"N-stage cell is {text!r} (unknown)"
    return f"N-stage cell {text!r} is not an N-stage 0-3"


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    os.symlink(os.path.relpath(target.resolve(), link.parent.resolve()), link, target_is_directory=True)


def _clear_links(folder: Path) -> None:
    """Remove an earlier import's link folder; refuse one that holds anything but links."""
    if not folder.exists():
        return
    foreign = [p for p in folder.glob("*/*") if not p.is_symlink()] + [p for p in folder.iterdir() if not p.is_dir()]
    if foreign:
        raise TciaImportError(f"{folder} holds {foreign[0]}, which no import wrote; move it, the import rewrites "
                           f"{folder} as links only")
    for link in folder.glob("*/*"):
        link.unlink()
    for scan in folder.iterdir():
        scan.rmdir()


def import_tcia(settings: ImportSettings) -> ImportReport:
    """Pair the download's series, join the clinical table and write the manifest and its links."""
    root, out = Path(settings.root), Path(settings.out)
    if not root.is_dir():
        raise TciaImportError(f"TCIA download folder {root} not found; pass the folder that holds the patient folders")
    label_column = load_dataset(settings.dataset, root=str(out.parent.resolve())).label_column
    n_column = LABEL_COLUMNS[label_column][0]
    clinical = read_clinical(settings)
    report = ImportReport()
    by_patient: dict[str, list[Series]] = defaultdict(list)
    for s in scan_headers(root, report):
        by_patient[s.patient].append(s)
    base = out.parent
    _clear_links(base / LINKS)
    for rank, patient in enumerate(sorted(by_patient), start=1):
        pairs = pair_patient(by_patient[patient], root, report, settings.ct_choice)
        if settings.studies_per_patient == "first":
            for later in pairs[1:]:
                report.skipped.append((_study_folder([later.ct, later.pet], root), "a later PET/CT of a patient "
                                       "already imported (studies_per_patient = first)"))
            pairs = pairs[:1]
        report.pairs += pairs
        if not pairs:
            continue
        n = parse_n_stage(clinical.get(patient))
        if isinstance(n, str):
            report.no_n_stage.append((patient, n))
            continue
        patient_id = f"{settings.pseudonym_prefix}-{rank:04d}"
        for k, pair in enumerate(pairs, start=1):
            scan_id = f"{patient_id}-s{k}"
            _link(pair.ct.folder, base / LINKS / scan_id / "ct")
            _link(pair.pet.folder, base / LINKS / scan_id / "pet")
            masks = Path(settings.totalseg_dir) / f"{scan_id}.nii.gz"
            report.rows.append({"patient_id": patient_id, "scan_id": scan_id, "ct": f"{LINKS}/{scan_id}/ct",
                                "pet": f"{LINKS}/{scan_id}/pet", n_column: str(n),
                                "totalseg": str(masks) if (base / masks).is_file() else ""})
    write_manifest(out, report.rows)
    return report


def import_presets(given: Mapping[str, Any]) -> list[Preset]:
    """The dataset config's `[import_tcia]` table (the clinical table's columns)."""
    dataset = given.get("dataset", ImportSettings.dataset)
    return [Preset(f"dataset {dataset!r} [import_tcia]", ImportSettings, stage_overrides(dataset, "import_tcia"))]


def run_import(settings: ImportSettings) -> int:
    """Import and print the summary; 0 (every problem of a study or patient is in the summary, not an error)."""
    report = import_tcia(settings)
    print("\n".join(report.lines()))
    print(f"manifest: {settings.out}")
    return 0


COMMAND = Command("python -m preprocess.import_tcia",
                  "Write a dataset manifest from a TCIA download (DICOM CT and PET) and its clinical table.",
                  (ImportSettings,), run_import, presets=import_presets, required=("root", "clinical"),
                  log_file=lambda settings: Path(settings.out).parent / "import_tcia.log")


main = COMMAND.run  # Import; failures raise
cli = COMMAND.cli  # for python -m: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
