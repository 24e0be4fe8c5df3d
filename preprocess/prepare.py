"""One scan from manifest row to arrays: read CT, PET as SUV, TotalSegmentator masks; crop to the mediastinum
on an isotropic grid; every step timed, every error naming the scan, the column, the file and the field.

Order: CT reoriented to LPS (axes permuted and flipped, no interpolation) -> masks onto the CT grid (nearest)
-> masks onto the isotropic grid covering the CT -> crop box from lungs + trachea -> CT, PET and lesions
resampled straight onto the cropped isotropic grid. PET goes from its own
grid to the final one in one interpolation (not via the CT grid, which would interpolate twice); only the
cropped box is resampled. Intensities stay raw: HU (int16) and SUV (float32).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.dataset import DatasetConfig
from cache.grid import Grid
from cache.manifest import ManifestRow
from preprocess.crop import CropError, crop_structures, ct_on_grid
from preprocess.dicom_series import DicomSeriesError
from preprocess.images import ImageReadError, read_image, read_pet_suv, to_lps
from preprocess.resample import resample_like
from preprocess.step_timing import timed, timing
from preprocess.suv import SuvError, SuvSettings
from preprocess.totalseg import TotalSegError, load_totalseg

INPUT_ERRORS = (SuvError, DicomSeriesError, ImageReadError, TotalSegError, CropError, RuntimeError, OSError)


class PrepareError(ValueError):
    """One scan that cannot be prepared; the message names the scan, the manifest column and the file."""


@dataclass(frozen=True)
class PreparedScan:
    """Arrays (z, y, x) of one scan on its cropped isotropic `grid`, with provenance and step timings."""

    ct_hu: np.ndarray  # int16
    suv: np.ndarray  # float32, SUVbw
    structures: np.ndarray  # uint8, TotalSegmentator v2 ids
    lesions: np.ndarray | None  # uint8 label ids of the lesion mask, or None
    grid: Grid
    provenance: dict
    timings_s: dict[str, float]


@contextmanager
def _input_step(row: ManifestRow, column: str, path: Path | None, timings: dict[str, float], step: str):
    """Time one step and turn an input error into a `PrepareError` naming scan, column and file."""
    with timing(timings, step):
        try:
            yield
        except INPUT_ERRORS as error:
            raise PrepareError(f"scan {row.scan_id!r} (manifest row {row.row}), column {column!r}, file {path}: "
                               f"{error}") from error


def _check_overlap(pet: sitk.Image, grid: Grid, row: ManifestRow) -> None:
    """Refuse a PET that misses the crop box entirely (another patient's or another frame of reference)."""
    size = np.asarray(pet.GetSize()) - 1
    corners = np.array([pet.TransformContinuousIndexToPhysicalPoint((size * np.array(c)).tolist())
                        for c in np.ndindex(2, 2, 2)])
    index = grid.physical_to_index(corners)
    low, high = index.min(axis=0), index.max(axis=0)
    if np.any(high < -0.5) or np.any(low > np.asarray(grid.shape_zyx) - 0.5):
        raise PrepareError(f"scan {row.scan_id!r} (manifest row {row.row}), columns 'pet' and 'ct': the PET "
                           f"({row.pet}) does not overlap the mediastinum box of the CT ({row.ct}); check that both "
                           "belong to the same scan and frame of reference")


def _lesion_labels(path: Path) -> sitk.Image:
    image = read_image(path)
    values = sitk.GetArrayViewFromImage(image)
    if values.min() < 0 or values.max() > 255 or not np.array_equal(values, np.round(values)):
        raise ImageReadError(f"{path}: a lesion mask must hold integer labels 0-255")
    return sitk.Cast(image, sitk.sitkUInt8)


def prepare_scan(row: ManifestRow, dataset: DatasetConfig, spacing_mm: float, crop_margin_mm: float,
                 suv: SuvSettings) -> PreparedScan:
    """Read, convert, resample and crop one manifest row (see the module docstring for the order)."""
    timings: dict[str, float] = {}
    with _input_step(row, "ct", row.ct, timings, "read_ct"):
        ct = to_lps(read_image(row.ct, modality="CT"))  # every grid below follows the CT's: all stored LPS
    with _input_step(row, "pet", row.pet, timings, "read_pet_suv"):
        pet, pet_provenance = read_pet_suv(row.pet, suv, dataset.pet_nifti_is_suv)
    with _input_step(row, "totalseg", row.totalseg, timings, "totalseg"):
        masks = load_totalseg(row.totalseg, ct, dataset.totalseg_version, ct_path=row.ct)
    lesions = None
    if row.lesions is not None:
        with _input_step(row, "lesions", row.lesions, timings, "read_lesions"):
            lesions = _lesion_labels(row.lesions)
    with _input_step(row, "totalseg", row.totalseg, timings, "crop"):
        crop = crop_structures(masks.image, spacing_mm, crop_margin_mm)
    _check_overlap(pet, crop.grid, row)
    ct_hu = timed(timings, "resample_ct", lambda: ct_on_grid(ct, crop.reference))
    suv_array = timed(timings, "resample_pet", lambda: sitk.GetArrayFromImage(
        resample_like(sitk.Cast(pet, sitk.sitkFloat32), crop.reference, "linear", 0.0)))
    lesion_array = None
    if lesions is not None:
        lesion_array = timed(timings, "resample_lesions", lambda: sitk.GetArrayFromImage(
            resample_like(lesions, crop.reference, "nearest", 0)))
    provenance = {
        "inputs": {column: None if getattr(row, column) is None else str(getattr(row, column))
                   for column in ("ct", "pet", "totalseg", "lesions")},
        "suv": pet_provenance,
        "fallbacks": list(pet_provenance.get("fallbacks", [])),
        "totalseg": masks.provenance(),
        "spacing_mm": float(spacing_mm),
        "crop_margin_mm": float(crop_margin_mm),
        "crop_box_zyx": [[s.start, s.stop] for s in crop.box],
    }
    return PreparedScan(
        ct_hu=ct_hu,
        suv=suv_array.astype(np.float32, copy=False),
        structures=crop.structures,
        lesions=lesion_array,
        grid=crop.grid,
        provenance=provenance,
        timings_s=timings,
    )
