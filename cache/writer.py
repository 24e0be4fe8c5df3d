"""Writes one scan's cache file atomically: a temporary file in the same folder, flushed, fsynced, renamed.

A reader therefore sees either no file or a complete one. Two processes writing the same scan each write their
own temporary file; the last rename wins and both candidates are complete. Temporary files of a killed writer
are named after its host and process id, so the next write of that scan removes them.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
import secrets
import shutil
import socket
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from cache import schema
from cache.atomic import atomic_path
from cache.checksums import array_digest, attribute_digests, mapping_digest
from cache.grid import Grid
from cache.manifest import ManifestRow, id_problem
from cache.settings import settings_dict, settings_hash
from cache.stations import stations


class CacheWriteError(ValueError):
    """A scan record that does not fit the schema (shape, dtype, station table)."""


@dataclass(frozen=True)
class StationTable:
    """One fused station: its attributes and its sampling table (flat indices with weight > 0, float64 cdf)."""

    name: str
    code: int
    centroid_vox: tuple[float, float, float]  # (z, y, x)
    centroid_mm: tuple[float, float, float]  # (x, y, z) physical
    bbox: tuple[int, int, int, int, int, int]  # (z0, y0, x0, z1, y1, x1), half-open
    volume_ml: float
    suv_max: float
    suv_mean: float
    vote_agreement: float
    index: np.ndarray  # int32
    cdf: np.ndarray  # float64, ends at 1.0


@dataclass(frozen=True)
class ScanLabels:
    """Labels of a scan from the manifest; None is unknown. Station vectors are int8[17] (1, 0, -1)."""

    tumor_side: str | None
    n_clinical: int | None
    n_pathological: int | None
    station_clinical: np.ndarray
    station_pathological: np.ndarray

    @classmethod
    def from_manifest_row(cls, row: ManifestRow) -> ScanLabels:
        return cls(row.tumor_side, row.n_clinical, row.n_pathological, row.station_status("cN"),
                   row.station_status("pN"))

    def differences(self, other: ScanLabels) -> list[str]:
        """`field: self value, other value` for each label that differs (empty when they agree)."""
        found = []
        for name in ("tumor_side", "n_clinical", "n_pathological"):
            if getattr(self, name) != getattr(other, name):
                found.append(f"{name} {getattr(self, name)} vs {getattr(other, name)}")
        for name in ("station_clinical", "station_pathological"):
            if not np.array_equal(getattr(self, name), getattr(other, name)):
                found.append(f"{name} {getattr(self, name).tolist()} vs {getattr(other, name).tolist()}")
        return found


@dataclass(frozen=True)
class ScanRecord:
    """Everything one cache file holds. `settings` are the settings dataclasses that made it (all of them are
    hashed); `inputs` maps an input role ("ct", "pet", ...) to the content digest of its file."""

    dataset: str
    patient_id: str
    scan_id: str
    grid: Grid
    ct_hu: np.ndarray  # int16 (z, y, x)
    suv: np.ndarray  # float32 (z, y, x)
    station_labels: np.ndarray  # uint8 (z, y, x)
    stations: tuple[StationTable, ...]
    labels: ScanLabels
    settings: tuple
    inputs: Mapping[str, str]
    rule_set: str
    qc: Mapping = field(default_factory=dict)
    lesions: np.ndarray | None = None


def package_version() -> str:
    try:
        return importlib.metadata.version("lnstage")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed)"


def _check_record(record: ScanRecord) -> None:
    where = f"scan {record.patient_id!r}/{record.scan_id!r}"
    for name in ("patient_id", "scan_id"):  # ids become file names: refuse any that could leave the folder
        problem = id_problem(getattr(record, name))
        if problem:
            raise CacheWriteError(f"{where}: {name} {getattr(record, name)!r} {problem}")
    expected = {"ct_hu": np.int16, "suv": np.float32, "station_labels": np.uint8}
    for name, dtype in expected.items():
        array = getattr(record, name)
        if array.dtype != dtype or array.shape != record.grid.shape_zyx:
            raise CacheWriteError(f"{where}: {name} is {array.dtype} {array.shape}, the schema needs {np.dtype(dtype)} "
                                  f"{record.grid.shape_zyx}")
    lesions = record.lesions
    if lesions is not None and (lesions.dtype != np.uint8 or lesions.shape != record.grid.shape_zyx):
        raise CacheWriteError(f"{where}: lesions is {record.lesions.dtype} {record.lesions.shape}, needs uint8 "
                              f"{record.grid.shape_zyx}")
    for table in record.stations:
        if table.index.dtype != np.int32 or table.cdf.dtype != np.float64 or table.index.shape != table.cdf.shape:
            raise CacheWriteError(f"{where}, station {table.name}: index must be int32 and cdf float64 of one length")
        if len(table.cdf) and table.cdf[-1] != 1.0:
            raise CacheWriteError(f"{where}, station {table.name}: cdf ends at {table.cdf[-1]!r}, not 1.0")
    for name in ("station_clinical", "station_pathological"):
        vector = getattr(record.labels, name)
        if vector.dtype != np.int8 or vector.shape != (len(stations()),):
            raise CacheWriteError(f"{where}: {name} must be int8[{len(stations())}], got {vector.dtype} {vector.shape}")


def _put(f: h5py.File, checksums: dict[str, str], path: str, array: np.ndarray) -> h5py.Dataset:
    """A contiguous, unchunked, uncompressed dataset, its checksum noted."""
    dataset = f.create_dataset(path, data=np.ascontiguousarray(array))
    checksums[path] = array_digest(array)
    return dataset


def write_qc(group: h5py.Group, values: Mapping) -> None:
    """Nested mappings become sub-groups, numbers, strings and numeric lists become attributes."""
    for key, value in values.items():
        if isinstance(value, Mapping):
            write_qc(group.require_group(str(key)), value)
        elif value is None:
            group.attrs[str(key)] = "none"
        else:
            group.attrs[str(key)] = value


def _write_contents(f: h5py.File, record: ScanRecord) -> None:
    checksums: dict[str, str] = {}
    f.attrs.update({
        schema.SCHEMA_VERSION_ATTR: schema.SCHEMA_VERSION,
        schema.DATASET_ATTR: record.dataset,
        schema.PATIENT_ID_ATTR: record.patient_id,
        schema.SCAN_ID_ATTR: record.scan_id,
        schema.CREATED_ATTR: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        schema.PACKAGE_VERSION_ATTR: package_version(),
        schema.SETTINGS_HASH_ATTR: settings_hash(*record.settings),
        schema.INPUTS_HASH_ATTR: mapping_digest(dict(record.inputs)),
        schema.RULE_SET_ATTR: record.rule_set,
        schema.SETTINGS_ATTR: json.dumps(settings_dict(*record.settings), sort_keys=True),
        schema.INPUTS_ATTR: json.dumps(dict(record.inputs), sort_keys=True),
    })
    grid_attrs = record.grid.to_attrs()
    for path, array in ((schema.CT, record.ct_hu), (schema.SUV, record.suv)):
        _put(f, checksums, path, array).attrs.update(grid_attrs)
    _put(f, checksums, schema.STATION_LABELS, record.station_labels)
    for table in record.stations:
        group = f.create_group(schema.station_group(table.name))
        group.attrs.update({
            schema.CODE_ATTR: table.code, schema.CENTROID_VOX_ATTR: table.centroid_vox,
            schema.CENTROID_MM_ATTR: table.centroid_mm, schema.BBOX_ATTR: table.bbox,
            schema.VOLUME_ML_ATTR: table.volume_ml, schema.SUV_MAX_ATTR: table.suv_max,
            schema.SUV_MEAN_ATTR: table.suv_mean, schema.VOTE_AGREEMENT_ATTR: table.vote_agreement,
        })
        _put(f, checksums, f"{group.name[1:]}/{schema.STATION_INDEX}", table.index)
        _put(f, checksums, f"{group.name[1:]}/{schema.STATION_CDF}", table.cdf)
    _write_labels(f, checksums, record.labels)
    write_qc(f.create_group(schema.QC_GROUP), record.qc)
    if record.lesions is not None:
        _put(f, checksums, schema.LESIONS, record.lesions)
    checksums.update(attribute_digests(f, schema.CHECKSUMS_GROUP))
    f.create_group(schema.CHECKSUMS_GROUP).attrs.update(checksums)


def _write_labels(f: h5py.File, checksums: dict[str, str], labels: ScanLabels) -> None:
    """The `/labels` group (replacing one that exists), its datasets' checksums noted."""
    if schema.LABELS_GROUP in f:
        del f[schema.LABELS_GROUP]
    group = f.create_group(schema.LABELS_GROUP)
    group.attrs.update({
        schema.TUMOR_SIDE_ATTR: labels.tumor_side or "",
        schema.N_CLINICAL_ATTR: schema.UNKNOWN_N if labels.n_clinical is None else labels.n_clinical,
        schema.N_PATHOLOGICAL_ATTR: schema.UNKNOWN_N if labels.n_pathological is None else labels.n_pathological,
    })
    _put(f, checksums, schema.STATION_CLINICAL, labels.station_clinical)
    _put(f, checksums, schema.STATION_PATHOLOGICAL, labels.station_pathological)


def _host_tag() -> str:
    return "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:32] or "host"


def temp_path(path: Path) -> Path:
    """A fresh temporary file name beside `path`: `.<stem>.<host>.<pid>.<random>.h5.tmp`."""
    return path.with_name(f".{path.stem}.{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}{schema.TEMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_dead_temps(folder: Path, stem: str | None = None) -> list[Path]:
    """Delete temporary files left by writers of this host that no longer run; returns what was removed.

    Files of other hosts (a shared mount) and of running writers are left alone.
    """
    pattern = f".{stem}.*{schema.TEMP_SUFFIX}" if stem else f".*{schema.TEMP_SUFFIX}"
    removed = []
    for temp in Path(folder).glob(pattern):
        parts = temp.name[: -len(schema.TEMP_SUFFIX)].split(".")
        if len(parts) < 5 or parts[-3] != _host_tag() or not parts[-2].isdigit():
            continue
        if stem is not None and ".".join(parts[1:-3]) != stem:
            continue
        if not _pid_alive(int(parts[-2])):
            temp.unlink(missing_ok=True)
            removed.append(temp)
    return removed


def check_writable(folder: Path) -> None:
    """Make `folder` and refuse it now if this process cannot create files there (a read-only mount, missing
    permissions): before hours of registration, not after."""
    folder = Path(folder)
    probe = temp_path(folder / "write-probe.h5")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as error:
        raise CacheWriteError(f"cache folder {folder} is not writable ({error.strerror or error}); make it writable "
                              "or choose another cache root (--cache-root or LNSTAGE_CACHE_ROOT)") from error


@contextmanager
def atomic_h5(path: Path, edit: bool = False) -> Iterator[h5py.File]:
    """An HDF5 file open for writing that appears at `path` only once the block ends without error.

    It is written as a temporary file beside `path` (dead temporaries of this scan removed first), fsynced and
    renamed into place; on any error the temporary file is deleted and `path` is left as it was. With `edit`,
    the temporary file starts as a copy of `path`: a file is never changed in place, since a reader may have it
    memory-mapped (writing under a mapping can kill that reader with SIGBUS).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_dead_temps(path.parent, path.stem)
    with atomic_path(path, temp_path(path)) as temp:
        if edit:
            shutil.copyfile(path, temp)
        with h5py.File(temp, "r+" if edit else "w") as f:
            yield f


def relabel_scan(path: str | Path, labels: ScanLabels, rule_set: str) -> Path:
    """Replace the labels and rule set of an existing cache file (a copy renamed into place, checksums renewed):
    the manifest's labels changed, the images and the registration did not."""
    path = Path(path)
    with atomic_h5(path, edit=True) as f:
        checksums = dict(f[schema.CHECKSUMS_GROUP].attrs)
        damaged = sorted(key for key, digest in attribute_digests(f, schema.CHECKSUMS_GROUP).items()
                         if checksums.get(key) != digest)
        if damaged:  # renewing the digests would bless the damage
            raise CacheWriteError(f"{path}: attributes {', '.join(damaged)} do not match their checksums; rebuild "
                                  f"with: {schema.rebuild_command(str(f.attrs.get(schema.DATASET_ATTR, '<dataset>')))}")
        _write_labels(f, checksums, labels)
        f.attrs[schema.RULE_SET_ATTR] = rule_set
        checksums.update(attribute_digests(f, schema.CHECKSUMS_GROUP))
        del f[schema.CHECKSUMS_GROUP]
        f.create_group(schema.CHECKSUMS_GROUP).attrs.update(checksums)
    return path


def write_scan(path: str | Path, record: ScanRecord) -> Path:
    """Write `record` to `path` atomically (temporary file, flush, fsync, rename); returns `path`."""
    path = Path(path)
    _check_record(record)
    with atomic_h5(path) as f:
        _write_contents(f, record)
    return path
