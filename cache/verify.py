"""Checks of cache files: schema, invariants and checksums, and a dataset's completeness and currency.

`verify_file` recomputes every dataset's and attribute set's content digest against `/checksums`;
`dataset_status` compares a cache folder with the dataset's manifest (labels included) and current settings,
listing scans that are missing or stale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from cache import schema
from cache.build_settings import settings_differences
from cache.checksums import content_problems, file_digest, input_digests
from cache.manifest import ManifestRow
from cache.reader import CacheError, open_scan, read_info, remember_verified
from cache.writer import ScanLabels


@dataclass(frozen=True)
class FileCheck:
    """Result of verifying one file: `problems` names each bad dataset (empty when the file is sound)."""

    path: Path
    problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_file(path: str | Path) -> FileCheck:
    """Recompute the schema check, the reader's invariants, and every dataset's and attribute set's checksum;
    each problem names the file and the dataset or object. Never raises for a damaged file."""
    path = Path(path)
    try:
        open_scan(path, verify=False).close()  # schema, metadata and sampling-table invariants
    except CacheError as error:
        return FileCheck(path, (str(error),))
    with h5py.File(path, "r", locking=False) as f:
        problems = tuple(content_problems(f, path))
        if not problems:
            remember_verified(f, path)  # `verify --dataset` then reads the file's metadata without hashing it again
    return FileCheck(path, problems)


@dataclass(frozen=True)
class DatasetStatus:
    """Scans of a manifest against a cache folder: `missing` keys, `stale` (key, reason), files not in the
    manifest (`extra`), and `unchecked_inputs` (keys whose input files are not reachable here)."""

    missing: tuple[str, ...] = ()
    stale: tuple[tuple[str, str], ...] = ()
    extra: tuple[str, ...] = ()
    unchecked_inputs: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not (self.missing or self.stale)


def scan_status(path: Path, row: ManifestRow, expected_settings: Mapping[str, Mapping], check_inputs: bool,
                atlas_bank_digest: str | None = None) -> str | None:
    """Why the cache file of `row` is stale (None when current): other settings, or other input content."""
    try:
        info = read_info(path)
    except CacheError as error:
        return str(error)
    differences = settings_differences(info.settings, expected_settings)
    if differences:
        return "settings differ: " + "; ".join(differences)
    labels = info.labels.differences(ScanLabels.from_manifest_row(row))
    if labels:
        return (f"labels differ (file vs manifest): {'; '.join(labels)}; python -m preprocess --dataset "
                f"{info.dataset} rewrites them without registering again")
    if check_inputs:
        current = input_digests(row, atlas_bank_digest)
        changed = sorted(role for role in set(current) | set(info.inputs) if current.get(role) != info.inputs.get(role))
        if changed:
            return f"input content changed: {', '.join(changed)}"
    return None


def inputs_reachable(row: ManifestRow) -> bool:
    return all(p.exists() for p in (row.ct, row.pet, row.totalseg, row.lesions) if p is not None)


def dataset_status(cache_dir: str | Path, rows: tuple[ManifestRow, ...], expected_settings: Mapping[str, Mapping],
                   check_inputs: bool = True, atlas_bank: Path | None = None) -> DatasetStatus:
    """Missing and stale scans of a dataset's cache folder against its manifest rows and current settings
    (and, with `check_inputs`, the content of each scan's input files and of the atlas bank)."""
    cache_dir = Path(cache_dir)
    bank_digest = file_digest(atlas_bank) if check_inputs and atlas_bank is not None and atlas_bank.exists() else None
    missing, stale, unchecked = [], [], []
    for row in rows:
        path = cache_dir / schema.cache_file_name(row.patient_id, row.scan_id)
        if not path.is_file():
            missing.append(row.key)
            continue
        reachable = check_inputs and inputs_reachable(row)
        if check_inputs and not reachable:
            unchecked.append(row.key)
        reason = scan_status(path, row, expected_settings, reachable, bank_digest)
        if reason:
            stale.append((row.key, reason))
    keys = {row.key for row in rows}
    extra = sorted(p.stem for p in cache_dir.glob(f"*{schema.FILE_SUFFIX}")
                   if not p.name.startswith(".") and p.stem not in keys)
    return DatasetStatus(tuple(missing), tuple(stale), tuple(extra), tuple(unchecked))
