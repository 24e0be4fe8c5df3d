"""Synthetic cache records of realistic size and layout (17 ellipsoid stations in a noisy volume).

Not anatomy (that is `preprocess/phantom/`): arrays shaped, typed and tabled like a real scan's, for tests and
benchmarks of the cache, the reader and the sampler.
"""

from __future__ import annotations

import numpy as np

from cache.build_settings import BuildSettings
from cache.grid import Grid
from cache.stations import n_stage, stations
from cache.writer import ScanLabels, ScanRecord
from preprocess.station_stats import station_tables


def ellipsoid_stations(shape_zyx: tuple[int, int, int], spacing_mm: float, rng: np.random.Generator) -> np.ndarray:
    """uint8 labels: one ellipsoid per station code (semi-axes 10-20 mm) around the middle of the volume."""
    labels = np.zeros(shape_zyx, dtype=np.uint8)
    shape = np.asarray(shape_zyx)
    for code in range(1, len(stations()) + 1):
        radius = rng.uniform(10.0, 20.0, 3) / spacing_mm
        centre = rng.uniform(0.3, 0.7, 3) * shape
        low = np.maximum(np.floor(centre - radius), 0).astype(int)
        high = np.minimum(np.ceil(centre + radius) + 1, shape).astype(int)
        z, y, x = np.ogrid[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        inside = ((z - centre[0]) / radius[0]) ** 2 + ((y - centre[1]) / radius[1]) ** 2 + (
            (x - centre[2]) / radius[2]) ** 2 <= 1.0
        labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]][inside] = code
    return labels


def synthetic_record(patient_id: str, scan_id: str, rng: np.random.Generator,
                     shape_zyx: tuple[int, int, int] = (160, 200, 200), spacing_mm: float = 1.0,
                     dataset: str = "synthetic", build: BuildSettings | None = None) -> ScanRecord:
    """A complete ScanRecord: CT int16 noise in HU, SUV float32 with hot spots, 17 stations with tables."""
    grid = Grid(shape_zyx, (spacing_mm,) * 3, (-100.0, -120.0, -80.0))
    ct = rng.integers(-1000, 1000, size=shape_zyx, dtype=np.int16)
    suv = rng.gamma(2.0, 0.5, size=shape_zyx).astype(np.float32)
    labels = ellipsoid_stations(shape_zyx, spacing_mm, rng)
    positive = tuple(s.name for s in stations() if rng.random() < 0.2)
    status = np.zeros(len(stations()), dtype=np.int8)
    for name in positive:
        status[[s.name for s in stations()].index(name)] = 1
    tables = station_tables(labels, suv, grid, {code: 0.8 for code in range(1, 18)})
    return ScanRecord(
        dataset=dataset, patient_id=patient_id, scan_id=scan_id, grid=grid, ct_hu=ct, suv=suv,
        station_labels=labels, stations=tables,
        labels=ScanLabels("R", n_stage(positive, "R"), None, status, np.full(len(stations()), -1, dtype=np.int8)),
        settings=(build or BuildSettings(spacing_mm=spacing_mm),), inputs={"ct": "synthetic", "pet": "synthetic"},
        rule_set="paper", qc={"timings_s": {"write": 0.0}},
    )
