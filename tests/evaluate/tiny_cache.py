"""Tiny real cache files for evaluate's tests: two stations (4R left half, 7 right half) on an 8x8x8 grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cache.build_settings import BuildSettings
from cache.grid import Grid
from cache.schema import cache_file_name
from cache.stations import station, status_vector
from cache.writer import ScanLabels, ScanRecord, StationTable, write_scan

SHAPE = (8, 8, 8)
GRID = Grid(SHAPE, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))


def _table(name: str, labels: np.ndarray, suv: np.ndarray) -> StationTable:
    code = station(name).code
    index = np.flatnonzero(labels == code).astype(np.int32)
    cdf = np.linspace(1.0 / index.size, 1.0, index.size)
    cdf[-1] = 1.0
    zyx = np.argwhere(labels == code)
    centroid = tuple(float(v) for v in zyx.mean(axis=0))
    lo, hi = zyx.min(axis=0), zyx.max(axis=0) + 1
    values = suv.ravel()[index]
    return StationTable(name, code, centroid, tuple(GRID.index_to_physical(np.array(centroid))),
                        (*map(int, lo), *map(int, hi)), index.size * 8 / 1000, float(values.max()),
                        float(values.mean()), 1.0, index, cdf)


def write_tiny_scan(folder: Path, patient_id: str, hot: dict[str, float], positive: tuple[str, ...],
                    tumor_side: str | None = "R", n_clinical: int | None = None,
                    lesions: np.ndarray | None = None) -> Path:
    """A scan whose SUV is 1 except a 2x2x2 block of value `hot[name]` at the centre of each named station."""
    labels = np.zeros(SHAPE, dtype=np.uint8)
    labels[:, :, :4] = station("4R").code
    labels[:, :, 4:] = station("7").code
    suv = np.ones(SHAPE, dtype=np.float32)
    centres = {"4R": (3, 3, 1), "7": (3, 3, 5)}
    for name, value in hot.items():
        z, y, x = centres[name]
        suv[z:z + 2, y:y + 2, x:x + 2] = value
    status = status_vector(positive)
    record = ScanRecord(
        dataset="tiny", patient_id=patient_id, scan_id="s0", grid=GRID,
        ct_hu=np.zeros(SHAPE, dtype=np.int16), suv=suv, station_labels=labels,
        stations=(_table("4R", labels, suv), _table("7", labels, suv)),
        labels=ScanLabels(tumor_side, n_clinical, None, status, np.full(17, -1, dtype=np.int8)),
        settings=(BuildSettings(),), inputs={"ct": "0"}, rule_set="paper", lesions=lesions,
    )
    return write_scan(folder / cache_file_name(patient_id, "s0"), record)
