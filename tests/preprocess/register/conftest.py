"""A toy thorax (boxes and ellipsoids with TotalSegmentator v2 ids and station codes) for fast registration tests."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from cache.stations import station
from preprocess.totalseg_labels import label_ids

SHAPE = (26, 30, 34)
SPACING_MM = 4.0

# (name, centre mm (z, y, x) relative to the body centre, semi-axes mm (z, y, x)); painted in this order.
STRUCTURES = (
    ("lung_upper_lobe_left", (0, 0, 30), (40, 36, 20)),
    ("lung_upper_lobe_right", (0, 0, -30), (40, 36, 20)),
    ("heart", (-18, -8, 4), (14, 14, 16)),
    ("aorta", (14, 0, 8), (22, 6, 6)),
    ("trachea", (16, -4, -2), (20, 5, 5)),
    ("esophagus", (6, 10, 2), (28, 4, 4)),
    ("vertebrae_T4", (18, 22, 0), (5, 7, 8)),
    ("vertebrae_T5", (6, 22, 0), (5, 7, 8)),
    ("vertebrae_T6", (-6, 22, 0), (5, 7, 8)),
    ("vertebrae_T7", (-18, 22, 0), (5, 7, 8)),
    ("sternum", (0, -30, 0), (24, 3, 6)),
)
STATIONS = (("4R", (12, -4, -10), (6, 6, 5)), ("4L", (12, -4, 8), (6, 6, 5)), ("7", (0, 2, 0), (6, 6, 8)))
HU = {"lung": -850, "heart": 40, "aorta": 200, "trachea": -1000, "esophagus": 20, "vertebrae": 700, "sternum": 600}


@dataclass(frozen=True)
class ToyScan:
    ct_hu: np.ndarray
    structures: np.ndarray
    stations: np.ndarray
    grid: Grid


def _ellipsoid(shape, centre_mm, axes_mm, spacing_mm) -> np.ndarray:
    zz, yy, xx = np.indices(shape, dtype=np.float64) * spacing_mm
    return (((zz - centre_mm[0]) / axes_mm[0]) ** 2 + ((yy - centre_mm[1]) / axes_mm[1]) ** 2
            + ((xx - centre_mm[2]) / axes_mm[2]) ** 2) <= 1.0


def toy_scan(shift_mm=(0.0, 0.0, 0.0), scale: float = 1.0, shape=SHAPE, spacing_mm: float = SPACING_MM) -> ToyScan:
    """A toy thorax whose anatomy is shifted by `shift_mm` (z, y, x) and scaled about the volume centre."""
    centre = (np.asarray(shape) - 1) * spacing_mm / 2 + np.asarray(shift_mm)
    ids = label_ids("v2")
    structures = np.zeros(shape, dtype=np.uint8)
    ct = np.full(shape, -900.0)
    body = _ellipsoid(shape, centre, np.asarray(shape) * spacing_mm * 0.48, spacing_mm)
    ct[body] = -80.0
    for name, offset, axes in STRUCTURES:
        mask = _ellipsoid(shape, centre + scale * np.asarray(offset), scale * np.asarray(axes), spacing_mm)
        structures[mask] = ids[name]
        ct[mask] = next(v for k, v in HU.items() if name.startswith(k))
    stations = np.zeros(shape, dtype=np.uint8)
    for name, offset, axes in STATIONS:
        mask = _ellipsoid(shape, centre + scale * np.asarray(offset), scale * np.asarray(axes), spacing_mm)
        stations[mask & (structures == 0)] = station(name).code
    grid = Grid(shape, (spacing_mm,) * 3, (0.0, 0.0, 0.0))
    return ToyScan(ct.astype(np.int16), structures, stations, grid)


def write_image(array: np.ndarray, grid: Grid, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    grid.apply_to_sitk(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def write_atlas(folder: Path, scan: ToyScan, name: str) -> Path:
    write_image(scan.ct_hu, scan.grid, folder / "ct.nii.gz")
    write_image(scan.structures, scan.grid, folder / "totalseg.nii.gz")
    write_image(scan.stations, scan.grid, folder / "stations.nii.gz")
    (folder / "atlas.toml").write_text(f'name = "{name}"\norigin = "toy"\nlicence = "CC0-1.0"\n'
                                       'label_scheme = "station codes"\ntotalseg_version = "v2"\n')
    return folder


@pytest.fixture(scope="session")
def toy_bank(tmp_path_factory) -> Path:
    """A bank of three toy atlases, shifted and scaled differently."""
    root = tmp_path_factory.mktemp("bank")
    for i, (shift, scale) in enumerate((((4, -4, 4), 1.0), ((-4, 4, 0), 1.05), ((0, 0, -4), 0.95))):
        write_atlas(root / f"atlas{i}", toy_scan(shift, scale), f"atlas{i}")
    return root
