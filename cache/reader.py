"""Reads cache files: metadata, and the volumes as memory maps at the offsets HDF5 reports.

Contiguous datasets (what the writer makes) are mapped straight from the file, so a crop costs a page-cache
copy and nothing else; a compressed copy (`python -m cache export --compress`) is read through h5py instead.
Files are opened without HDF5 file locking: a cache file never changes once renamed into place, and locks fail
on many network mounts and read-only folders.

`CacheReader` keeps a bounded number of files open (least recently used let go of first) and opens them lazily in
each process, so a DataLoader worker never shares a handle opened before the fork.
"""

from __future__ import annotations

import json
import mmap
import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import h5py
import numpy as np

from cache import schema
from cache.build_settings import settings_differences
from cache.checksums import content_problems
from cache.grid import Grid
from cache.stations import stations as station_catalogue
from cache.writer import ScanLabels

_POPULATE = getattr(mmap, "MAP_POPULATE", 0)  # Linux only
# Bumped in every forked child, so a reader notices a fork with an integer compare instead of a getpid call.
_fork_generation = [0]
os.register_at_fork(after_in_child=lambda: _fork_generation.__setitem__(0, _fork_generation[0] + 1))
# A file as it is now: (inode, size, mtime in ns); a relabel or rebuild renames a new file into place.
Identity = tuple[int, int, int]
# Files whose checksums this process (or its parent before a fork) has verified: path -> identity.
_verified: dict[Path, Identity] = {}
# Sampling tables whose invariants this process has checked: (path, identity, station). A reopened file (a
# reader past `max_open`) is not scanned again.
_checked_tables: set[tuple[Path, Identity, str]] = set()


class CacheError(ValueError):
    """A cache file that cannot be used; the message names the file and what to do."""


class SchemaVersionError(CacheError):
    """A cache file of another schema version."""


class StaleCacheError(CacheError):
    """A cache file built with other preprocessing settings than the current ones."""


@dataclass(frozen=True)
class StationInfo:
    """Attributes of one fused station in a cache file (see cache/schema.py for units and axes)."""

    name: str
    code: int
    centroid_vox: tuple[float, float, float]
    centroid_mm: tuple[float, float, float]
    bbox: tuple[int, int, int, int, int, int]
    volume_ml: float
    suv_max: float
    suv_mean: float
    vote_agreement: float
    n_voxels: int  # length of the sampling table


@dataclass(frozen=True)
class ScanInfo:
    """Metadata of one cache file, read without touching the volumes."""

    path: Path
    schema_version: int
    dataset: str
    patient_id: str
    scan_id: str
    created: str
    package_version: str
    settings_hash: str
    inputs_hash: str
    rule_set: str
    settings: dict[str, Any]
    inputs: dict[str, str]
    grid: Grid
    stations: dict[str, StationInfo]
    labels: ScanLabels
    compressed: bool

    @property
    def key(self) -> str:
        return f"{self.patient_id}{schema.KEY_SEPARATOR}{self.scan_id}"


def _open_h5(path: Path) -> h5py.File:
    if path.is_dir():
        raise CacheError(f"{path} is a folder, not a cache file; pass one of its .h5 files, or list them with: "
                         f"python -m cache ls {path}")
    try:
        return h5py.File(path, "r", locking=False)
    except FileNotFoundError:
        raise CacheError(f"cache file {path} not found") from None
    except Exception as error:  # noqa: BLE001 -- HDF5 raises OSError and others for a damaged superblock
        raise CacheError(f"{path}: not a readable HDF5 file ({error}); delete it and rebuild the scan") from error


def _identity(stat: os.stat_result) -> Identity:
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def file_identity(f: h5py.File) -> Identity:
    """Identity of the file an open HDF5 handle reads (not of whatever its path names now)."""
    return _identity(os.fstat(f.id.get_vfd_handle()))


def _open_raw_and_h5(path: Path) -> tuple[BinaryIO, h5py.File]:
    """The file at `path` opened raw (for the memory map) and through HDF5, both the same file: a file replaced
    (os.replace by a relabel or rebuild) between the two opens is opened again, once."""
    for _ in range(2):
        try:
            raw = open(path, "rb")  # closed by the caller, or below when the HDF5 open fails
        except FileNotFoundError:
            raise CacheError(f"cache file {path} not found") from None
        except OSError as error:
            raise CacheError(f"{path}: cannot be opened ({error}); check its permissions") from error
        try:
            f = _open_h5(path)
        except BaseException:
            raw.close()
            raise
        if file_identity(f) == _identity(os.fstat(raw.fileno())):
            return raw, f
        f.close()
        raw.close()
    raise CacheError(f"{path}: replaced by another file twice while being opened; another process is rewriting "
                     "it (a rebuild or relabel): read it again when that has finished")


def check_schema(f: h5py.File, path: Path) -> None:
    """Refuse a file of another schema version, naming both versions and the rebuild command."""
    try:
        version = f.attrs.get(schema.SCHEMA_VERSION_ATTR)
        dataset = f.attrs.get(schema.DATASET_ATTR, "<dataset>")
    except Exception as error:  # noqa: BLE001 -- damaged attribute storage: one clear refusal
        raise CacheError(f"{path}: the root attributes cannot be read ({error}); the file is damaged: delete it and "
                         "rebuild the scan") from error
    if version is None:
        raise SchemaVersionError(f"{path}: no {schema.SCHEMA_VERSION_ATTR!r} attribute, so not a cache file of this "
                                 f"tool (or an unfinished one); rebuild with: {schema.rebuild_command(dataset)}")
    try:
        number = int(version)
    except (TypeError, ValueError):
        raise SchemaVersionError(f"{path}: {schema.SCHEMA_VERSION_ATTR!r} is {version!r}, not a number; the file is "
                                 f"damaged: rebuild with: {schema.rebuild_command(dataset)}") from None
    if number != schema.SCHEMA_VERSION:
        raise SchemaVersionError(f"{path}: schema version {number}, this tool reads version "
                                 f"{schema.SCHEMA_VERSION}; rebuild with: {schema.rebuild_command(dataset)}")


def check_settings(info: ScanInfo, expected: Mapping[str, Mapping]) -> None:
    """Refuse a file whose stored settings differ from `expected` (`{class name: {field: value}}`)."""
    differences = settings_differences(info.settings, expected)
    if differences:
        raise StaleCacheError(f"{info.path}: built with other settings than the current ones: "
                              f"{'; '.join(differences)}; rebuild with: {schema.rebuild_command(info.dataset)}")


def _station_info(group: h5py.Group) -> StationInfo:
    a = group.attrs
    return StationInfo(
        name=group.name.rsplit("/", 1)[-1], code=int(a[schema.CODE_ATTR]),
        centroid_vox=tuple(float(v) for v in a[schema.CENTROID_VOX_ATTR]),
        centroid_mm=tuple(float(v) for v in a[schema.CENTROID_MM_ATTR]),
        bbox=tuple(int(v) for v in a[schema.BBOX_ATTR]), volume_ml=float(a[schema.VOLUME_ML_ATTR]),
        suv_max=float(a[schema.SUV_MAX_ATTR]), suv_mean=float(a[schema.SUV_MEAN_ATTR]),
        vote_agreement=float(a[schema.VOTE_AGREEMENT_ATTR]), n_voxels=int(group[schema.STATION_INDEX].shape[0]),
    )


def _labels(f: h5py.File) -> ScanLabels:
    a = f[schema.LABELS_GROUP].attrs

    def n(value) -> int | None:
        return None if int(value) == schema.UNKNOWN_N else int(value)

    return ScanLabels(
        tumor_side=str(a[schema.TUMOR_SIDE_ATTR]) or None, n_clinical=n(a[schema.N_CLINICAL_ATTR]),
        n_pathological=n(a[schema.N_PATHOLOGICAL_ATTR]), station_clinical=f[schema.STATION_CLINICAL][()],
        station_pathological=f[schema.STATION_PATHOLOGICAL][()],
    )


def _metadata_problems(info: ScanInfo, shapes: Mapping[str, tuple[int, ...]]) -> list[str]:
    """Cheap invariants of a file's metadata (no volume is read): what a flipped byte in an attribute or a
    hand edit would break. Each problem names the field."""
    shape, grid = info.grid.shape_zyx, info.grid
    problems = [f"{name} has shape {s}, not the CT's {shape}" for name, s in shapes.items() if s != shape]
    if not (len(shape) == 3 and min(shape) > 0):
        problems.append(f"image/ct has shape {shape}")
    if not (np.all(np.isfinite(grid.spacing_mm)) and min(grid.spacing_mm) > 0 and np.all(np.isfinite(grid.origin_mm))
            and abs(abs(np.linalg.det(grid.direction_matrix)) - 1) < 1e-3):
        problems.append(f"grid spacing {grid.spacing_mm}, origin {grid.origin_mm} or direction {grid.direction} "
                        "is not a valid geometry")
    codes = {s.name: s.code for s in station_catalogue()}
    for name, station in info.stations.items():
        z0, y0, x0, z1, y1, x1 = station.bbox
        numbers = (station.volume_ml, station.suv_max, station.suv_mean, station.vote_agreement, *station.centroid_mm)
        if codes.get(name) != station.code:
            problems.append(f"station {name!r} has code {station.code}, the catalogue says {codes.get(name)}")
        if not (0 <= z0 < z1 <= shape[0] and 0 <= y0 < y1 <= shape[1] and 0 <= x0 < x1 <= shape[2]):
            problems.append(f"station {name!r} bbox {station.bbox} is not inside the volume {shape}")
        elif not all(lo - 0.5 <= c <= hi - 0.5
                     for c, lo, hi in zip(station.centroid_vox, (z0, y0, x0), (z1, y1, x1), strict=True)):
            problems.append(f"station {name!r} centroid_vox {station.centroid_vox} is outside its bbox")
        if not np.all(np.isfinite(numbers)) or station.volume_ml < 0 or not 0 <= station.vote_agreement <= 1:
            problems.append(f"station {name!r} statistics are not finite or out of range: volume_ml "
                            f"{station.volume_ml}, suv_max {station.suv_max}, suv_mean {station.suv_mean}, "
                            f"vote_agreement {station.vote_agreement}")
    labels = info.labels
    if labels.tumor_side not in (None, "R", "L"):
        problems.append(f"labels tumor_side {labels.tumor_side!r} is not R, L or empty")
    for name in ("n_clinical", "n_pathological"):
        if getattr(labels, name) not in (None, 0, 1, 2, 3):
            problems.append(f"labels {name} {getattr(labels, name)} is not 0-3 or unknown ({schema.UNKNOWN_N})")
    for name in ("station_clinical", "station_pathological"):
        vector = getattr(labels, name)
        if vector.shape != (len(codes),) or not np.isin(vector, (-1, 0, 1)).all():
            problems.append(f"labels {name} {vector.tolist()} is not {len(codes)} values of -1, 0, 1")
    return problems


def _info_from_file(f: h5py.File, path: Path) -> ScanInfo:
    """The file's metadata, refused (CacheError naming the field and the rebuild command) when any item is
    missing, unparsable or breaks an invariant: never a traceback, so every caller can report and go on."""
    check_schema(f, path)
    dataset = str(f.attrs.get(schema.DATASET_ATTR, "<dataset>"))
    damaged = f"the file is damaged: rebuild with: {schema.rebuild_command(dataset)}"
    try:
        a = f.attrs
        ct = f[schema.CT]
        stations = {name: _station_info(group) for name, group in f[schema.STATIONS_GROUP].items()
                    if isinstance(group, h5py.Group)}
        stations = dict(sorted(stations.items(), key=lambda item: item[1].code))
        info = ScanInfo(
            path=path, schema_version=int(a[schema.SCHEMA_VERSION_ATTR]), dataset=str(a[schema.DATASET_ATTR]),
            patient_id=str(a[schema.PATIENT_ID_ATTR]), scan_id=str(a[schema.SCAN_ID_ATTR]),
            created=str(a[schema.CREATED_ATTR]), package_version=str(a[schema.PACKAGE_VERSION_ATTR]),
            settings_hash=str(a[schema.SETTINGS_HASH_ATTR]), inputs_hash=str(a[schema.INPUTS_HASH_ATTR]),
            rule_set=str(a[schema.RULE_SET_ATTR]), settings=_json_attr(a, schema.SETTINGS_ATTR),
            inputs=_json_attr(a, schema.INPUTS_ATTR), grid=Grid.from_attrs(ct.shape, ct.attrs),
            stations=stations, labels=_labels(f), compressed=ct.compression is not None or ct.chunks is not None,
        )
        shapes = {name: f[name].shape for name in (schema.SUV, schema.STATION_LABELS)}
    except KeyError as error:
        raise CacheError(f"{path}: schema version {schema.SCHEMA_VERSION} item missing ({error}); {damaged}") from None
    except Exception as error:  # noqa: BLE001 -- any HDF5 or parsing error of damaged metadata: one clear refusal
        raise CacheError(f"{path}: unreadable metadata ({type(error).__name__}: {error}); {damaged}") from error
    problems = _metadata_problems(info, shapes)
    if problems:
        raise CacheError(f"{path}: {'; '.join(problems)}; {damaged}")
    return info


def _json_attr(attrs, name: str) -> dict:
    value = json.loads(attrs[name])  # a JSONDecodeError is a ValueError: reported by the caller
    if not isinstance(value, dict):
        raise ValueError(f"attribute {name!r} is not a JSON object")
    return value


def check_tables(path: Path, station: str, n_voxels: int, index: np.ndarray, cdf: np.ndarray) -> None:
    """Refuse a sampling table whose indices leave the volume or whose cdf is not a distribution: a damaged
    index would crop a patch of padding far outside the scan without any error."""
    problem = ""
    if index.shape != cdf.shape or index.ndim != 1:
        problem = f"index {index.shape} and cdf {cdf.shape} differ in length"
    elif len(index) and (int(index.min()) < 0 or int(index.max()) >= n_voxels):
        problem = f"index holds voxels outside 0..{n_voxels - 1} ({int(index.min())}..{int(index.max())})"
    elif len(cdf) and not (cdf[0] >= 0 and cdf[-1] == 1.0 and np.all(np.diff(cdf) >= 0)):
        problem = "cdf is not non-decreasing from >= 0 to exactly 1.0"
    if problem:
        raise CacheError(f"{path}: station {station!r}: {problem}; the file is damaged: rebuild the scan")


def remember_verified(f: h5py.File, path: Path) -> None:
    """Note that the file `f` reads at `path` matches its checksums (`python -m cache verify` found it sound)."""
    _verified[path] = file_identity(f)


def verify_content(f: h5py.File, path: Path) -> None:
    """Refuse a file whose datasets or attributes differ from their checksums; a file verified once is not
    hashed again in this process while its inode, size and modification time stay the same. The identity is
    that of the file `f` reads, so a file renamed into place meanwhile is not taken as verified."""
    identity = file_identity(f)
    if _verified.get(path) == identity:
        return
    problems = content_problems(f, path)
    if problems:
        dataset = str(f.attrs.get(schema.DATASET_ATTR, "<dataset>"))
        raise CacheError("; ".join(problems) + f"; rebuild with: {schema.rebuild_command(dataset)}")
    _verified[path] = identity


def read_info(path: str | Path, expected_settings: Mapping[str, Mapping] | None = None,
              verify: bool = True) -> ScanInfo:
    """Metadata of a cache file; refuses another schema version, broken invariants, when given other settings,
    and with `verify` (the default; once per file and process) content that differs from its checksums, so no
    label or statistic of a damaged file reaches a metric."""
    path = Path(path)
    with _open_h5(path) as f:
        info = _info_from_file(f, path)
        if verify:
            verify_content(f, path)
    if expected_settings is not None:
        check_settings(info, expected_settings)
    return info


def _mapped(dataset: h5py.Dataset, buffer: mmap.mmap) -> np.ndarray | None:
    """The dataset as a read-only array over the file's memory map, or None if it is not stored contiguously."""
    if dataset.chunks is not None or dataset.compression is not None:
        return None
    offset = dataset.id.get_offset()
    if offset is None:  # never written (all fill value): no storage to map
        return None
    count = int(np.prod(dataset.shape, dtype=np.int64))
    return np.frombuffer(buffer, dtype=dataset.dtype, count=count, offset=offset).reshape(dataset.shape)


class CacheScan:
    """One open cache file: `info`, and `ct`, `suv`, `station_labels` as (z, y, x) arrays that support slicing
    (memory maps for contiguous files, h5py datasets for a compressed copy). Read-only.

    With `verify` (the default) every checksum is recomputed once per file and process before anything is
    served, so a damaged file gives an error, never a patch; the sampling tables' invariants are always checked.
    """

    def __init__(self, path: str | Path, expected_settings: Mapping[str, Mapping] | None = None,
                 verify: bool = True):
        self.path = Path(path)
        raw, self._file = _open_raw_and_h5(self.path)
        try:
            with raw:
                self._read(raw, expected_settings, verify)
        except CacheError:
            self.close()
            raise
        except Exception as error:  # noqa: BLE001 -- mapping or reading a damaged file: one clear refusal
            self.close()
            dataset = self.info.dataset if hasattr(self, "info") else "<dataset>"
            raise CacheError(f"{self.path}: cannot be read ({type(error).__name__}: {error}); the file is damaged: "
                             f"rebuild with: {schema.rebuild_command(dataset)}") from error
        except BaseException:
            self.close()
            raise

    def _read(self, raw: BinaryIO, expected_settings: Mapping[str, Mapping] | None, verify: bool) -> None:
        """Metadata, checks, and the volumes mapped from `raw` (the same file as the HDF5 handle)."""
        self.identity = _identity(os.fstat(raw.fileno()))
        self.info = _info_from_file(self._file, self.path)
        if expected_settings is not None:
            check_settings(self.info, expected_settings)
        if verify:
            verify_content(self._file, self.path)
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._buffer = None
        if not self.info.compressed:
            # MAP_POPULATE maps every page now: first touches during sampling would each fault.
            self._buffer = mmap.mmap(raw.fileno(), 0, flags=mmap.MAP_SHARED | _POPULATE, prot=mmap.PROT_READ)
        self.ct = self._array(schema.CT)
        self.suv = self._array(schema.SUV)
        self.station_labels = self._array(schema.STATION_LABELS)
        if self._buffer is not None:  # everything needed later is mapped: the HDF5 handle can go
            for name in self.info.stations:
                self.table(name)
            self._file.close()

    @property
    def memory_mapped(self) -> bool:
        return self._buffer is not None

    def _array(self, path: str):
        dataset = self._file[path]
        if self._buffer is not None:
            array = _mapped(dataset, self._buffer)
            if array is not None:
                return array
        return dataset

    def table(self, station: str) -> tuple[np.ndarray, np.ndarray]:
        """Sampling table of a station: (flat voxel indices int32, cdf float64 ending at 1.0)."""
        if station not in self._tables:
            if station not in self.info.stations:
                raise KeyError(f"{self.path}: no station {station!r}; present: {', '.join(self.info.stations)}")
            group = self._file[schema.station_group(station)]
            index, cdf = self._array(group.name + "/" + schema.STATION_INDEX), self._array(
                group.name + "/" + schema.STATION_CDF)
            index = np.asarray(index[()]) if isinstance(index, h5py.Dataset) else index
            cdf = np.asarray(cdf[()]) if isinstance(cdf, h5py.Dataset) else cdf
            checked = (self.path, self.identity, station)
            if checked not in _checked_tables:
                check_tables(self.path, station, int(np.prod(self.info.grid.shape_zyx)), index, cdf)
                _checked_tables.add(checked)
            self._tables[station] = (index, cdf)
        return self._tables[station]

    def close(self) -> None:
        """Close the HDF5 handle; the memory map goes when the last array viewing it is gone."""
        if getattr(self, "_file", None) is not None and self._file.id.valid:
            self._file.close()

    def __enter__(self) -> CacheScan:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_scan(path: str | Path, expected_settings: Mapping[str, Mapping] | None = None,
              verify: bool = True) -> CacheScan:
    """Open one cache file for reading; refuses another schema version, when given other settings, and (with
    `verify`) damaged content."""
    return CacheScan(path, expected_settings, verify)


class CacheReader:
    """Many cache files behind integer ids, opened lazily in the process that reads them, at most `max_open`
    at a time (least recently used let go of first; None: every file stays open once opened).

    Construct it in the main process (it reads metadata, `infos`, and with `verify` checks every file's checksums
    there, once); each DataLoader worker opens its own handles on first use after the fork. Pickles without open
    handles, for spawned workers. An open mapped file holds one descriptor and no HDF5 handle (a compressed one
    keeps its HDF5 handle): a reader whose files are drawn at random again and again (training) keeps them all
    open, as a reopen rereads the metadata and maps the file again.
    """

    def __init__(self, paths: Sequence[str | Path], expected_settings: Mapping[str, Mapping] | None = None,
                 max_open: int | None = 64, verify: bool = True):
        if max_open is not None and max_open < 1:
            raise ValueError(f"max_open must be >= 1 or None, got {max_open}")
        self.paths = [Path(p) for p in paths]
        self.expected_settings = expected_settings
        self.max_open = max(1, len(self.paths)) if max_open is None else max_open
        self.verify = verify
        self.infos = [read_info(p, expected_settings, verify) for p in self.paths]
        self._open: OrderedDict[int, CacheScan] = OrderedDict()
        self._generation = _fork_generation[0]

    def __len__(self) -> int:
        return len(self.paths)

    def scan(self, i: int) -> CacheScan:
        """The open file of scan `i`, opening it (and letting go of the least recently used) when needed.

        A file let go of is not closed here: it closes when its last user (a batch being cut) drops it, so a
        batch of more scans than `max_open` never reads a closed compressed file."""
        if self._generation != _fork_generation[0]:  # forked: handles of the parent are not ours to use
            self._open = OrderedDict()
            self._generation = _fork_generation[0]
        scan = self._open.get(i)
        if scan is None:
            scan = CacheScan(self.paths[i], verify=self.verify)
            self._open[i] = scan
            while len(self._open) > self.max_open:
                self._open.popitem(last=False)
        else:
            self._open.move_to_end(i)
        return scan

    @property
    def n_open(self) -> int:
        return len(self._open) if self._generation == _fork_generation[0] else 0

    def close(self) -> None:
        while self._open:
            self._open.popitem()[1].close()

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_open"] = OrderedDict()
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._generation = _fork_generation[0]


def cache_files(folder: str | Path) -> list[Path]:
    """The cache files of a dataset folder, sorted (temporary files of running writers are not listed)."""
    return sorted(p for p in Path(folder).glob(f"*{schema.FILE_SUFFIX}") if not p.name.startswith("."))
