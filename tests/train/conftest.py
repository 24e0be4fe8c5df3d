"""A tiny cohort of real cache files (written by cache.writer) with a dataset config, for trainer tests.

12 patients, one 24^3 scan each at 2 mm; four stations (4R, 7, 10R, 4L) as 4^3 cubes with uniform weight
tables. A malignant station glows in SUV (8 vs 1), so a model can learn the task in a few steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cache.build_settings import build_settings_for
from cache.grid import Grid
from cache.manifest import read_manifest, write_manifest
from cache.schema import cache_file_name
from cache.stations import station
from cache.writer import ScanLabels, ScanRecord, StationTable, write_scan

EDGE = 24
CUBES = {"4R": (6, 6, 6), "7": (6, 14, 10), "10R": (14, 6, 14), "4L": (14, 14, 6)}  # corner (z, y, x)
# (N-stage, positive stations) per patient, tumour side R (side None for the last one)
LABELS = [(0, ""), (0, ""), (0, ""), (0, ""), (1, "10R"), (1, "10R"), (2, "4R"), (2, "7;4R"), (2, "7"),
          (3, "4L"), (3, "4L;7"), (0, "")]

TRAIN_TABLE = """
[preprocess]
spacing_mm = 2.0
registration_preset = "demo"

[train]
channels = [4, 8]
dropout = [0.0, 0.1]
patch_size_vox = 8
margin_vox = 2
n_folds = 3
batch_size = 8
num_workers = 0
max_epochs = 2
progress = false
device = "cpu"
"""


def _station_table(name: str, corner: tuple[int, int, int]) -> StationTable:
    z, y, x = np.meshgrid(*(np.arange(c, c + 4) for c in corner), indexing="ij")
    index = np.ravel_multi_index((z.ravel(), y.ravel(), x.ravel()), (EDGE,) * 3).astype(np.int32)
    cdf = np.arange(1, index.size + 1, dtype=np.float64) / index.size
    cdf[-1] = 1.0
    centre = tuple(float(c + 1.5) for c in corner)
    return StationTable(name, station(name).code, centre, centre[::-1], (*corner, *(c + 4 for c in corner)),
                        0.5, 1.0, 1.0, 1.0, index, cdf)


def write_tiny_cohort(root: Path, seed: int = 0, second_scans: tuple[int, ...] = (),
                      inf_suv: tuple[int, ...] = (), unknown_side: tuple[int, ...] = (len(LABELS) - 1,)) -> Path:
    """Manifest, cache files and dataset config under `root`; returns the config path. The patients at
    `second_scans` (positions in LABELS) get a second scan "S<i>b" with the same labels; those at `inf_suv` an SUV
    of +inf on a one-voxel shell around each station (outside every station, inside its patches), as a broken PET
    conversion might leave; those at `unknown_side` no tumour side (the others R)."""
    rng = np.random.default_rng(seed)
    config = root / "tiny.toml"
    config.write_text(f'root = "{root}"\nmanifest = "manifest.csv"\ncache_root = "cache"\n' + TRAIN_TABLE)
    rows = []
    for i, (n, positive) in enumerate(LABELS):
        side = "" if i in unknown_side else "R"
        for scan_id in (f"S{i:02d}", f"S{i:02d}b")[:2 if i in second_scans else 1]:
            rows.append({"patient_id": f"P{i:02d}", "scan_id": scan_id, "ct": "ct.nii.gz", "pet": "pet.nii.gz",
                         "tumor_side": side, "n_clinical": str(n), "stations_clinical": positive})
    write_manifest(root / "manifest.csv", rows)
    manifest = read_manifest(root / "manifest.csv", root, check_files=False)
    manifest.raise_issues()
    build = build_settings_for(str(config))
    for row in manifest.rows:
        ct = rng.normal(40, 30, (EDGE,) * 3).astype(np.int16)
        suv = rng.uniform(0.5, 1.5, (EDGE,) * 3).astype(np.float32)
        labels = np.zeros((EDGE,) * 3, dtype=np.uint8)
        status = row.station_status("cN")
        for name, corner in CUBES.items():
            box = tuple(slice(c, c + 4) for c in corner)
            labels[box] = station(name).code
            if status[station(name).index] == 1:
                suv[box] = 8.0
            if int(row.patient_id[1:]) in inf_suv:
                inside = suv[box].copy()
                suv[tuple(slice(c - 1, c + 5) for c in corner)] = np.inf
                suv[box] = inside
        record = ScanRecord(
            dataset="tiny", patient_id=row.patient_id, scan_id=row.scan_id,
            grid=Grid((EDGE,) * 3, (2.0,) * 3, (0.0,) * 3), ct_hu=ct, suv=suv, station_labels=labels,
            stations=tuple(_station_table(name, corner) for name, corner in CUBES.items()),
            labels=ScanLabels.from_manifest_row(row), settings=(build,), inputs={"ct": "x", "pet": "y"},
            rule_set="paper")
        write_scan(root / "cache" / "tiny" / cache_file_name(row.patient_id, row.scan_id), record)
    return config


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    return write_tiny_cohort(tmp_path_factory.mktemp("tiny"))
