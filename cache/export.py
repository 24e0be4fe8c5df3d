"""A compressed copy of a cache file, for transfer (`python -m cache export --compress`).

Every group, attribute and checksum is copied as it is; datasets are stored chunked with gzip and shuffle.
The reader accepts such a copy through h5py (slower than the memory map of the contiguous original).
"""

from __future__ import annotations

from pathlib import Path

import h5py

from cache.writer import atomic_h5

GZIP_LEVEL = 4


def _copy(source: h5py.Group, target: h5py.Group, compress: bool) -> None:
    target.attrs.update(dict(source.attrs))
    for name, item in source.items():
        if isinstance(item, h5py.Group):
            _copy(item, target.create_group(name), compress)
            continue
        options = {}
        if compress and item.ndim > 0 and item.size > 0:
            options = {"compression": "gzip", "compression_opts": GZIP_LEVEL, "shuffle": True, "chunks": True}
        copy = target.create_dataset(name, data=item[()], **options)
        copy.attrs.update(dict(item.attrs))


def export_file(source: str | Path, target: str | Path, compress: bool = True) -> Path:
    """Copy one cache file to `target` (written atomically), compressed unless `compress` is False."""
    source, target = Path(source), Path(target)
    if source.resolve() == target.resolve():
        raise ValueError(f"export target {target} is the source file itself; choose another folder")
    with atomic_h5(target) as dst, h5py.File(source, "r", locking=False) as src:
        _copy(src, dst, compress)
    return target
