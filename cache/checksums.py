"""Content digests: of arrays (per cache dataset, checked by `python -m cache verify`) and of input files.

A dataset's digest covers its dtype, shape and values, not how HDF5 lays it out, so a compressed export
carries the same checksums as the contiguous original.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import h5py
import numpy as np

from cache.manifest import ManifestRow

DIGEST_SIZE = 16
_READ_BYTES = 1 << 22
# Rows of a dataset hashed per read, so verifying a big volume needs little memory.
_ROWS_PER_READ = 16


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
    for start in range(0, dataset.shape[0], _ROWS_PER_READ):
        yield dataset[start:start + _ROWS_PER_READ]


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


INPUT_ROLES = ("ct", "pet", "totalseg", "lesions")


def input_digests(row: ManifestRow, atlas_bank_digest: str | None = None) -> dict[str, str]:
    """Content digest per input role of a manifest row ("ct", "pet", "totalseg", "lesions" when given), plus the
    atlas bank's when given: what a cache file's `inputs` attribute holds (roles, never paths)."""
    digests = {role: file_digest(getattr(row, role)) for role in INPUT_ROLES if getattr(row, role) is not None}
    if atlas_bank_digest is not None:
        digests["atlas_bank"] = atlas_bank_digest
    return digests
