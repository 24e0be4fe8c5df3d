"""The atlas bank: one folder per atlas with ct.nii.gz, totalseg (file or folder), stations.nii.gz
and atlas.toml, read onto the scans' isotropic spacing and cropped to the mediastinum exactly as scans are.

atlas.toml keys: `name`, `origin`, `licence`, `label_scheme` (free text), optional `totalseg_version`
("v1", "v2" or "auto", default "auto": the mask file's header decides).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid
from cache.settings import SettingsError, read_toml
from cache.stations import stations
from preprocess.crop import crop_structures, ct_on_grid
from preprocess.images import read_image
from preprocess.resample import resample_like
from preprocess.totalseg import load_totalseg

ATLAS_FILES = ("ct.nii.gz", "stations.nii.gz", "atlas.toml")


class AtlasBankError(ValueError):
    """An atlas bank folder or atlas that cannot be used; the message names the folder, file and field."""


@dataclass(frozen=True)
class Atlas:
    """One atlas on the bank's isotropic grid: CT (HU), structures (v2 ids), stations (codes 0-17), metadata."""

    name: str
    grid: Grid
    ct_hu: np.ndarray
    structures: np.ndarray
    stations: np.ndarray
    meta: dict


@dataclass(frozen=True)
class AtlasBank:
    path: Path
    spacing_mm: float
    crop_margin_mm: float
    atlases: tuple[Atlas, ...]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.atlases)


def _totalseg_path(folder: Path) -> Path:
    for candidate in (folder / "totalseg.nii.gz", folder / "totalseg"):
        if candidate.exists():
            return candidate
    raise AtlasBankError(f"atlas {folder}: no TotalSegmentator masks; expected totalseg.nii.gz or a folder totalseg/")


@dataclass(frozen=True)
class CroppedScan:
    """CT (HU, int16) and structures (v2 ids, uint8) on an isotropic grid cropped to the mediastinum."""

    ct_hu: np.ndarray
    structures: np.ndarray
    grid: Grid
    reference: sitk.Image


def read_cropped_scan(ct_path: Path, totalseg_path: Path, spacing_mm: float, crop_margin_mm: float,
                      totalseg_version: str = "auto") -> CroppedScan:
    """A CT and its TotalSegmentator masks resampled to `spacing_mm` and cropped as `preprocess` crops scans."""
    ct = read_image(Path(ct_path))
    crop = crop_structures(load_totalseg(Path(totalseg_path), ct, totalseg_version).image, spacing_mm, crop_margin_mm)
    return CroppedScan(ct_on_grid(ct, crop.reference), crop.structures, crop.grid, crop.reference)


def read_labels_on(path: Path, reference: sitk.Image, like: Path) -> np.ndarray:
    """uint8 label image at `path`, drawn on the grid of the image `like`, resampled (nearest) onto `reference`."""
    labels = sitk.Cast(read_image(path), sitk.sitkUInt8)
    like_image = sitk.ReadImage(str(like))
    if labels.GetSize() != like_image.GetSize():
        raise AtlasBankError(f"{path}: size {labels.GetSize()} differs from {like} ({like_image.GetSize()}); "
                             "labels must be drawn on that image's grid")
    labels.CopyInformation(like_image)
    return sitk.GetArrayFromImage(resample_like(labels, reference, "nearest", 0)).astype(np.uint8)


def load_atlas(folder: Path, spacing_mm: float, crop_margin_mm: float) -> Atlas:
    """One atlas folder read, resampled to `spacing_mm` (isotropic) and cropped to its mediastinum box."""
    missing = [name for name in ATLAS_FILES if not (folder / name).is_file()]
    if missing:
        raise AtlasBankError(f"atlas {folder}: missing {', '.join(missing)} (bank format: "
                             f"docs/architecture.md#the-atlas-bank)")
    meta = read_toml(folder / "atlas.toml")
    version = meta.get("totalseg_version", "auto")
    if version not in ("auto", "v1", "v2"):
        raise AtlasBankError(f"{folder / 'atlas.toml'}, field 'totalseg_version': {version!r} is not auto, v1 or v2")
    scan = read_cropped_scan(folder / "ct.nii.gz", _totalseg_path(folder), spacing_mm, crop_margin_mm, version)
    station_array = read_labels_on(folder / "stations.nii.gz", scan.reference, folder / "ct.nii.gz")
    if station_array.max(initial=0) > len(stations()):
        raise AtlasBankError(f"{folder / 'stations.nii.gz'}: label {int(station_array.max())} is not a station code "
                             f"0-{len(stations())}; import sub-label atlases with "
                             "python -m preprocess.register.import_lynch")
    return Atlas(name=str(meta.get("name", folder.name)), grid=scan.grid, ct_hu=scan.ct_hu,
                 structures=scan.structures, stations=station_array, meta=dict(meta))


def load_atlas_bank(path: str | Path, spacing_mm: float, crop_margin_mm: float) -> AtlasBank:
    """Every atlas in the bank folder `path` (sub-folders with atlas.toml, in name order), on the scans' grid."""
    path = Path(path)
    if not path.is_dir():
        raise AtlasBankError(f"atlas bank {path} is not a folder; set atlas_bank in the dataset config")
    folders = sorted(p for p in path.iterdir() if p.is_dir() and (p / "atlas.toml").is_file())
    if not folders:
        raise AtlasBankError(f"atlas bank {path} holds no atlas (sub-folders with atlas.toml)")
    try:
        atlases = tuple(load_atlas(folder, spacing_mm, crop_margin_mm) for folder in folders)
    except SettingsError as error:
        raise AtlasBankError(str(error)) from error
    return AtlasBank(path, float(spacing_mm), float(crop_margin_mm), atlases)
