"""The dataset manifest: one CSV row per scan, validated column by column.

Columns (docs/architecture.md#inputs-dataset-config-and-manifest):
patient_id, scan_id, ct, pet, totalseg, lesions, tumor_side (R|L|empty),
n_clinical (0-3|empty), n_pathological (0-3|empty), stations_clinical ("4R;7" or empty),
stations_pathological, split_group. Relative paths resolve against the dataset root.

An empty station list means "no positive station" for N0 and "unknown" otherwise (an N-stage-only scan, as in
Lung-PET-CT-Dx). Every problem is collected as a `ManifestIssue` naming the row, the column and the value, so
one check reports all of them and the good rows can still run.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from cache.schema import KEY_SEPARATOR
from cache.stations import (
    StationError,
    UnknownTumorSideError,
    n_stage,
    parse_station_list,
    stations,
    status_vector,
)

COLUMNS = (
    "patient_id", "scan_id", "ct", "pet", "totalseg", "lesions", "tumor_side", "n_clinical", "n_pathological",
    "stations_clinical", "stations_pathological", "split_group",
)
REQUIRED_VALUES = ("patient_id", "scan_id", "ct", "pet")
LABEL_COLUMNS = {"cN": ("n_clinical", "stations_clinical"), "pN": ("n_pathological", "stations_pathological")}
ID_COLUMNS = ("patient_id", "scan_id")
# Ids become file names (`<patient_id>__<scan_id>.h5`): ASCII letters and digits at both ends, `.`, `_` and `-`
# inside, never `__` (the key separator, so no two (patient, scan) pairs share a file) and never `:` or `/`
# (left free for namespacing ids by dataset). 64 characters keep every name, temporary ones too, under 255 bytes.
ID_MAX_LENGTH = 64
ID_PATTERN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?")
ID_RULE = (f"an id is 1-{ID_MAX_LENGTH} ASCII letters, digits, '.', '_' or '-', starting and ending with a letter "
           f"or digit, without {KEY_SEPARATOR!r}")
N_STAGE_PATTERN = re.compile(r"[Nn]?([0-3])")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message lists every bad row, column and value."""


@dataclass(frozen=True)
class ManifestIssue:
    manifest: Path
    row: int  # line number in the CSV file (the header is line 1); 1 for file-level problems
    column: str
    value: str
    problem: str

    def __str__(self) -> str:
        return f"{self.manifest}, row {self.row}, column {self.column!r}: {self.value!r} {self.problem}"


def id_problem(value: str) -> str | None:
    """Why `value` cannot be a patient or scan id (None when it can): see ID_RULE."""
    if len(value) > ID_MAX_LENGTH:
        return f"is {len(value)} characters long; {ID_RULE}"
    if not ID_PATTERN.fullmatch(value) or KEY_SEPARATOR in value:
        return f"is not a valid id; {ID_RULE}"
    return None


@dataclass(frozen=True)
class ManifestRow:
    """One scan of the manifest, paths resolved, labels parsed."""

    row: int
    patient_id: str
    scan_id: str
    ct: Path
    pet: Path
    totalseg: Path | None
    lesions: Path | None
    tumor_side: str | None
    n_clinical: int | None
    n_pathological: int | None
    stations_clinical: tuple[str, ...]
    stations_pathological: tuple[str, ...]
    split_group: str

    @property
    def key(self) -> str:
        """File stem of this scan's cache file: `<patient_id>__<scan_id>` (unique: ids never hold `__`)."""
        return f"{self.patient_id}{KEY_SEPARATOR}{self.scan_id}"

    def n_stage(self, label_column: Literal["cN", "pN"]) -> int | None:
        return getattr(self, LABEL_COLUMNS[label_column][0])

    def station_status(self, label_column: Literal["cN", "pN"]) -> np.ndarray:
        """int8[17]: 1 malignant, 0 benign, -1 unknown (N>0 with no station list, or N unknown)."""
        n_column, stations_column = LABEL_COLUMNS[label_column]
        n, positive = getattr(self, n_column), getattr(self, stations_column)
        if n == 0:
            return status_vector(())
        if positive:
            return status_vector(positive)
        return np.full(len(stations()), -1, dtype=np.int8)


@dataclass(frozen=True)
class Manifest:
    path: Path
    rows: tuple[ManifestRow, ...]
    issues: tuple[ManifestIssue, ...]

    def raise_issues(self) -> None:
        if self.issues:
            listing = "\n  ".join(str(issue) for issue in self.issues)
            raise ManifestError(f"{len(self.issues)} problem(s) in {self.path}:\n  {listing}")


def _is_image_path(path: Path) -> bool:
    """An image file, or a folder (a DICOM series or a folder of per-structure masks)."""
    return path.is_file() or path.is_dir()


class _RowReader:
    """Parses one CSV row, collecting an issue for each bad value instead of stopping at the first."""

    def __init__(self, manifest: Path, root: Path, row: int, values: dict[str, str], check_files: bool):
        self.manifest, self.root, self.row, self.values = manifest, root, row, values
        self.check_files = check_files
        self.issues: list[ManifestIssue] = []

    def issue(self, column: str, problem: str) -> None:
        self.issues.append(ManifestIssue(self.manifest, self.row, column, self.values.get(column, ""), problem))

    def text(self, column: str) -> str:
        value = (self.values.get(column) or "").strip()
        if not value and column in REQUIRED_VALUES:
            self.issue(column, "is empty; this column is required")
        return value

    def identifier(self, column: str) -> str:
        value = self.text(column)
        problem = id_problem(value) if value else None
        if problem:
            self.issue(column, problem)
        return value

    def path(self, column: str) -> Path | None:
        value = self.text(column)
        if not value:
            return None
        path = Path(value)
        path = path if path.is_absolute() else self.root / path
        if self.check_files and not _is_image_path(path):
            self.issue(column, f"does not exist (looked for {path})")
        return path

    def side(self) -> str | None:
        value = self.text("tumor_side").upper()
        if value and value not in ("R", "L"):
            self.issue("tumor_side", "is not R, L or empty")
            return None
        return value or None

    def n(self, column: str) -> int | None:
        value = self.text(column)
        if not value:
            return None
        match = N_STAGE_PATTERN.fullmatch(value)  # ASCII digits only: "²".isdigit() and int("٣") == 3
        if match is None:
            self.issue(column, "is not an N-stage 0-3 (or N0-N3, or empty)")
            return None
        return int(match.group(1))

    def station_list(self, column: str) -> tuple[str, ...]:
        try:
            return parse_station_list(self.text(column))
        except StationError as error:
            self.issue(column, f"holds an unknown station: {error}")
            return ()

    def check_consistency(self, n_column: str, stations_column: str, side: str | None, n: int | None,
                          positive: tuple[str, ...], rule_set: str) -> None:
        if n is None or not positive:
            return
        try:
            implied = n_stage(positive, side, rule_set)
        except UnknownTumorSideError:
            return  # reported as an unstageable patient, not a manifest error
        if implied != n:
            self.issue(
                stations_column,
                f"gives N{implied} under rule set {rule_set!r} with tumour side {side}, but {n_column} says N{n}",
            )


def _parse_row(reader: _RowReader, rule_set: str) -> ManifestRow:
    side = reader.side()
    n_c, n_p = reader.n("n_clinical"), reader.n("n_pathological")
    st_c, st_p = reader.station_list("stations_clinical"), reader.station_list("stations_pathological")
    reader.check_consistency("n_clinical", "stations_clinical", side, n_c, st_c, rule_set)
    reader.check_consistency("n_pathological", "stations_pathological", side, n_p, st_p, rule_set)
    return ManifestRow(
        row=reader.row,
        patient_id=reader.identifier("patient_id"),
        scan_id=reader.identifier("scan_id"),
        ct=reader.path("ct") or Path(),
        pet=reader.path("pet") or Path(),
        totalseg=reader.path("totalseg"),
        lesions=reader.path("lesions"),
        tumor_side=side,
        n_clinical=n_c,
        n_pathological=n_p,
        stations_clinical=st_c,
        stations_pathological=st_p,
        split_group=reader.text("split_group"),
    )


def read_manifest(path: str | Path, root: str | Path, rule_set: str = "paper", check_files: bool = True) -> Manifest:
    """Read and validate a manifest; bad rows are left out of `rows` and described in `issues`."""
    path, root = Path(path), Path(root)
    if not path.is_file():
        raise ManifestError(f"manifest {path} not found; write it as described in README.md (manifest format)")
    with open(path, newline="", encoding="utf-8-sig") as f:
        table = csv.DictReader(f)
        header = [h.strip() for h in (table.fieldnames or [])]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            issues = tuple(ManifestIssue(path, 1, c, "", "column is missing from the header") for c in missing)
            return Manifest(path, (), issues)
        raw_rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in table]
    rows, issues, seen, seen_keys = [], [], {}, {}
    for line, values in enumerate(raw_rows, start=2):
        reader = _RowReader(path, root, line, values, check_files)
        row = _parse_row(reader, rule_set)
        scan_id, key = row.scan_id, row.key.casefold()  # case-insensitive file systems fold names
        if scan_id and scan_id in seen:
            reader.issue("scan_id", f"is a duplicate of row {seen[scan_id]}")
        elif scan_id and key in seen_keys:
            reader.issue("scan_id", f"names the same cache file as row {seen_keys[key]} (ids differ only in case)")
        seen.setdefault(scan_id, line)
        seen_keys.setdefault(key, line)
        issues.extend(reader.issues)
        if not reader.issues:
            rows.append(row)
    return Manifest(path, tuple(rows), tuple(issues))


def write_manifest(path: str | Path, rows: list[dict[str, str]]) -> None:
    """Write manifest rows (dicts keyed by COLUMNS; missing keys empty) as CSV."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})


def manifest_summary(manifest: Manifest, label_column: Literal["cN", "pN"] = "cN") -> str:
    """Per-column counts (N-stages, sides, positive stations) of the valid rows, for `--check`."""
    n_column, stations_column = LABEL_COLUMNS[label_column]
    rows = manifest.rows
    lines = [f"{manifest.path}: {len(rows)} valid row(s), {len(manifest.issues)} problem(s)",
             f"  patients: {len({r.patient_id for r in rows})}, scans: {len(rows)}"]
    for column in ("n_clinical", "n_pathological"):
        counts = Counter("?" if getattr(r, column) is None else f"N{getattr(r, column)}" for r in rows)
        marker = "  (target)" if column == n_column else ""
        lines.append(f"  {column}: " + ", ".join(f"{k} {counts[k]}" for k in sorted(counts)) + marker)
    sides = Counter(r.tumor_side or "unknown" for r in rows)
    lines.append("  tumor_side: " + ", ".join(f"{k} {sides[k]}" for k in sorted(sides)))
    for column in ("stations_clinical", "stations_pathological"):
        counts = Counter(name for r in rows for name in getattr(r, column))
        listed = sum(1 for r in rows if getattr(r, column))
        per_station = ", ".join(f"{s.name} {counts[s.name]}" for s in stations() if counts[s.name])
        lines.append(f"  {column}: {listed} row(s) with a list; positives: {per_station or 'none'}")
    for column in ("totalseg", "lesions"):
        lines.append(f"  {column}: given for {sum(1 for r in rows if getattr(r, column))} row(s)")
    return "\n".join(lines)
