"""Content digests: of arrays and attribute sets (per cache dataset and object, checked by `python -m cache
verify`) and of input files.

A dataset's digest covers its dtype, shape and values, not how HDF5 lays it out, so a compressed export
carries the same checksums as the contiguous original. The attributes of every group and dataset (labels,
grid, station statistics, settings, QC) are digested per object under the key `@<path>` (`@/` for the root).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from cache import schema
from cache.manifest import ManifestRow

DIGEST_SIZE = 16
_READ_BYTES = 1 << 22
# Bytes of a dataset hashed per read (whole rows), so verifying a big volume needs little memory and a long
# 1-D sampling table few reads.
_BLOCK_BYTES = 1 << 22


def _hasher() -> hashlib.blake2b:
    return hashlib.blake2b(digest_size=DIGEST_SIZE)


def _little_endian(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))


def array_digest(array: np.ndarray) -> str:
    """Hex digest of an array's dtype, shape and values (little-endian, C order)."""
    array = np.asarray(array)
    hasher = _hasher()
    hasher.update(f"{array.dtype.newbyteorder('<').str}{array.shape}".encode())
    hasher.update(_little_endian(array).data)
    return hasher.hexdigest()


def _dataset_blocks(dataset: h5py.Dataset) -> Iterator[np.ndarray]:
    if dataset.ndim == 0:
        yield np.asarray(dataset[()])
        return
    row_bytes = dataset.dtype.itemsize * int(np.prod(dataset.shape[1:], dtype=np.int64))
    rows = max(1, _BLOCK_BYTES // max(row_bytes, 1))
    for start in range(0, dataset.shape[0], rows):
        yield dataset[start:start + rows]


def dataset_digest(dataset: h5py.Dataset) -> str:
    """Hex digest of an HDF5 dataset's content, equal to `array_digest(dataset[()])`, read in blocks."""
    hasher = _hasher()
    hasher.update(f"{dataset.dtype.newbyteorder('<').str}{dataset.shape}".encode())
    for block in _dataset_blocks(dataset):
        hasher.update(_little_endian(block).data)
    return hasher.hexdigest()


def file_digest(path: str | Path) -> str:
    """Hex digest of a file's bytes, or of a folder's files (names relative to it, sorted, and contents)."""
    path = Path(path)
    hasher = _hasher()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            hasher.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            while block := f.read(_READ_BYTES):
                hasher.update(block)
    return hasher.hexdigest()


def mapping_digest(values: Mapping) -> str:
    """Hex digest of a JSON-able mapping (keys sorted), e.g. the per-input digests of a scan."""
    hasher = _hasher()
    hasher.update(json.dumps(values, sort_keys=True).encode())
    return hasher.hexdigest()


ATTRS_KEY_PREFIX = "@"


def attrs_key(name: str) -> str:
    """Checksum key of an object's attribute set: `@image/ct`, `@labels`, `@/` for the root group."""
    return ATTRS_KEY_PREFIX + (name.strip("/") or "/")


def _attr_bytes(value) -> bytes:
    """Canonical bytes of one attribute value: text as UTF-8, a byte string as its own raw bytes (under its own
    prefix: decoding would give two different invalid bytes one digest), numbers as dtype, shape and
    little-endian values."""
    if isinstance(value, bytes):
        return b"b" + bytes(value)
    if isinstance(value, str):
        return b"s" + value.encode()
    array = np.asarray(value)
    if array.dtype.kind in "OSU":
        return b"t" + json.dumps([str(v.decode() if isinstance(v, bytes) else v) for v in array.ravel()]).encode()
    return f"{array.dtype.newbyteorder('<').str}{array.shape}".encode() + _little_endian(array).tobytes()


def attrs_digest(attrs: Mapping) -> str:
    """Hex digest of an attribute set: every name and value, names sorted."""
    hasher = _hasher()
    for name in sorted(attrs):
        hasher.update(name.encode() + b"\0" + _attr_bytes(attrs[name]) + b"\0")
    return hasher.hexdigest()


def _attrs_digest_or_none(attrs) -> str | None:
    try:
        return attrs_digest(dict(attrs))
    except Exception:  # noqa: BLE001 -- any HDF5 error reading damaged attributes: reported as unreadable
        return None


def attribute_digests(f: h5py.File, skip: str) -> dict[str, str | None]:
    """`{attrs_key(path): attrs_digest}` of every object in the file with attributes, the root included, except
    the group `skip` (where the checksums themselves live); None for an attribute set that cannot be read."""
    digests = {attrs_key("/"): _attrs_digest_or_none(f.attrs)} if len(f.attrs) else {}

    def collect(name: str, item) -> None:  # visititems stops at the first callback that returns a value
        if name != skip and len(item.attrs):
            digests[attrs_key(name)] = _attrs_digest_or_none(item.attrs)

    f.visititems(collect)
    return digests


def _datasets(f: h5py.File) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}

    def collect(name: str, item) -> None:  # visititems stops at the first callback that returns a value
        if isinstance(item, h5py.Dataset):
            found[name] = item

    f.visititems(collect)
    return found


def _compare(kind: str, path: Path, current: Mapping[str, str | None], stored: Mapping[str, str]) -> list[str]:
    """One line per name whose digest is missing, different (None: unreadable) or listed without an object."""
    plural = kind.startswith("attributes")
    problems = []
    for name in sorted(set(current) | set(stored)):
        digest = current.get(name, "")
        if name not in stored:
            problems.append(f"{path}: {kind} {name!r} {'have' if plural else 'has'} no checksum")
        elif name not in current:
            problems.append(f"{path}: {kind} {name!r} {'are' if plural else 'is'} listed in /checksums but missing")
        elif digest is None:
            problems.append(f"{path}: {kind} {name!r} cannot be read (damaged)")
        elif digest != stored[name]:
            match = "do not match their" if plural else "does not match its"
            problems.append(f"{path}: {kind} {name!r} {match} checksum (content changed or damaged)")
    return problems


def _readable_digest(dataset: h5py.Dataset) -> str | None:
    try:
        return dataset_digest(dataset)
    except Exception:  # noqa: BLE001 -- a damaged chunk, layout or type: reported as unreadable
        return None


def content_problems(f: h5py.File, path: Path) -> list[str]:
    """Every dataset and every object's attribute set of an open cache file against `/checksums`; one line
    naming the file and the dataset or object per mismatch (empty when all match). Never raises for damage:
    what cannot be read is a problem too."""
    try:
        stored = {str(k): str(v) for k, v in f[schema.CHECKSUMS_GROUP].attrs.items()}
        attrs = {k[1:]: v for k, v in attribute_digests(f, schema.CHECKSUMS_GROUP).items()}
        datasets = {name: _readable_digest(dataset) for name, dataset in _datasets(f).items()}
    except Exception as error:  # noqa: BLE001 -- damaged structure (object headers, links): the file is reported
        return [f"{path}: the checksums or the file's structure cannot be read ({type(error).__name__}: {error})"]
    stored_attrs = {k[1:]: v for k, v in stored.items() if k.startswith(ATTRS_KEY_PREFIX)}
    stored_datasets = {k: v for k, v in stored.items() if not k.startswith(ATTRS_KEY_PREFIX)}
    return _compare("attributes of", path, attrs, stored_attrs) + _compare("dataset", path, datasets,
                                                                           stored_datasets)


INPUT_ROLES = ("ct", "pet", "totalseg", "lesions")


def input_digests(row: ManifestRow, atlas_bank_digest: str | None = None) -> dict[str, str]:
    """Content digest per input role of a manifest row ("ct", "pet", "totalseg", "lesions" when given), plus the
    atlas bank's when given: what a cache file's `inputs` attribute holds (roles, never paths)."""
    digests = {role: file_digest(getattr(row, role)) for role in INPUT_ROLES if getattr(row, role) is not None}
    if atlas_bank_digest is not None:
        digests["atlas_bank"] = atlas_bank_digest
    return digests
