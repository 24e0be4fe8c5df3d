"""A cache file corrupted at 200 seeded random byte positions (half in the volumes and tables, half in HDF5
metadata: superblock, object headers, attributes, heaps): every change to a value the trainer or evaluation
reads is flagged by `cache verify`, and no such file gives a patch, labels or statistics without an error.
A change that alters no value (free space, padding) reads as before.

The first 20 positions run in the default suite; all 200 with `pytest -m slow`.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from cache.reader import CacheError, CacheReader, open_scan, read_info
from cache.sampler import PatchSampler, SamplerSettings
from cache.verify import verify_file
from cache.writer import write_scan
from tests.cache.conftest import tiny_record

SEED = 14
N_POSITIONS = 200
PER_CHUNK = 20
STATION = "7"


def _attrs(attrs) -> dict:
    return {k: (v if isinstance(v, str) else (np.asarray(v).dtype.str, np.asarray(v).tobytes())) for k, v in
            attrs.items()}


def read_everything(path: Path) -> dict:
    """Every value of the file as h5py reads it: attributes of every object, and every dataset's type, shape
    and bytes."""
    values = {}
    with h5py.File(path, "r", locking=False) as f:
        values["@/"] = _attrs(f.attrs)

        def visit(name: str, item) -> None:
            values["@" + name] = _attrs(item.attrs)
            if isinstance(item, h5py.Dataset):
                values[name] = (item.dtype.str, item.shape, item[()].tobytes())

        f.visititems(visit)
    return values


def _data_extents(path: Path) -> list[tuple[int, int]]:
    """(start, end) byte ranges of the contiguous datasets' raw data."""
    extents = []
    with h5py.File(path, "r", locking=False) as f:
        def visit(name: str, item) -> None:
            if isinstance(item, h5py.Dataset) and item.id.get_offset() is not None:
                extents.append((item.id.get_offset(), item.id.get_offset() + item.id.get_storage_size()))

        f.visititems(visit)
    return sorted(extents)


@pytest.fixture(scope="module")
def original(tmp_path_factory) -> Path:
    return write_scan(tmp_path_factory.mktemp("fuzz") / "p1__s1.h5", tiny_record())


@pytest.fixture(scope="module")
def reference(original):
    """What the sound file gives: all values and the centroid patch of one station."""
    patch = PatchSampler(CacheReader([original]), SamplerSettings(patch_size_vox=8)).centroid([0], [STATION]).image
    return read_everything(original), patch


def positions(path: Path) -> list[tuple[int, int]]:
    """(byte position, xor mask): alternately inside a dataset's raw data and outside it (HDF5 metadata)."""
    size, extents = path.stat().st_size, _data_extents(path)
    in_data = np.zeros(size, dtype=bool)
    for start, end in extents:
        in_data[start:end] = True
    data, metadata = np.flatnonzero(in_data), np.flatnonzero(~in_data)
    rng = np.random.default_rng(SEED)
    chosen = []
    for k in range(N_POSITIONS):
        pool = data if k % 2 == 0 else metadata
        chosen.append((int(pool[rng.integers(len(pool))]), int(rng.integers(1, 256))))
    return chosen


def corrupted_copy(original: Path, folder: Path, k: int, position: int, mask: int) -> Path:
    """A copy with one byte changed, under a name of its own (each file is verified afresh)."""
    content = bytearray(original.read_bytes())
    content[position] ^= mask
    path = folder / f"p{k}__s1.h5"
    path.write_bytes(bytes(content))
    return path


@pytest.mark.parametrize("chunk", [pytest.param(c, marks=[pytest.mark.slow] if c else [])
                                   for c in range(N_POSITIONS // PER_CHUNK)])
def test_every_change_a_reader_would_see_is_flagged_and_refused(original, reference, tmp_path, chunk):
    values, patch = reference
    altered_seen, chosen = 0, positions(original)
    for k in range(chunk * PER_CHUNK, (chunk + 1) * PER_CHUNK):
        position, mask = chosen[k]
        path = corrupted_copy(original, tmp_path, k, position, mask)
        try:
            altered = read_everything(path) != values
        except Exception:  # noqa: BLE001 -- h5py cannot even read it back: certainly altered
            altered = True
        check = verify_file(path)
        where = f"byte {position} xor {mask:#04x}"
        if not altered:
            assert check.ok, f"{where}: no value changed, but verify says {check.problems}"
            sampled = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=8)).centroid([0], [STATION])
            assert np.array_equal(sampled.image, patch), where
            continue
        altered_seen += 1
        assert not check.ok, f"{where} changed what a reader sees, but verify calls the file sound"
        assert all(str(path) in problem for problem in check.problems)
        for read in (read_info, open_scan, lambda p: CacheReader([p])):  # labels, volumes, patches
            with pytest.raises(CacheError, match=str(path)):
                read(path)
        path.unlink()
    assert altered_seen >= PER_CHUNK // 2  # the positions do reach values (a test that could fail)
