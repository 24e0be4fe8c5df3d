"""A CT volume as a real DICOM series (int16 HU, one file per axial slice), beside the PET writer of dicom_pet.py.

Slices may be thinner than the simulation grid (`slice_mm`): the volume is then interpolated linearly along z,
as a scanner reconstructs thin slices from the same acquisition. All identifiers are synthetic.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pydicom.uid import generate_uid

from cache.grid import Grid
from preprocess.phantom.dicom_pet import set_axial_slice, slice_dataset

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"


def thin_slices(hu: np.ndarray, grid: Grid, slice_mm: float) -> tuple[np.ndarray, Grid]:
    """int16 HU (z, y, x) resampled linearly along z to `slice_mm` slices (same first slice), and its grid."""
    step = slice_mm / grid.spacing_mm[2]
    count = int(np.floor((hu.shape[0] - 1) / step + 1e-6)) + 1
    position = np.arange(count) * step
    lower = np.minimum(np.floor(position).astype(int), hu.shape[0] - 1)
    upper = np.minimum(lower + 1, hu.shape[0] - 1)
    weight = (position - lower).astype(np.float32)[:, None, None]
    thin = hu[lower] * (1.0 - weight) + hu[upper] * weight
    spacing = (grid.spacing_mm[0], grid.spacing_mm[1], float(slice_mm))
    return np.rint(thin).astype(np.int16), Grid((count, *hu.shape[1:]), spacing, grid.origin_mm, grid.direction)


def write_ct_series(folder: Path, hu: np.ndarray, grid: Grid, patient_id: str, when: dt.datetime, uid_seed: str,
                    study_uid: str, frame_uid: str, series_number: int = 1, description: str = "CT") -> None:
    """Write int16 HU slices (z order) into `folder`, one file each; series and instance UIDs come from
    `uid_seed` (deterministic), the study and frame of reference are the caller's."""
    if grid.direction != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise ValueError(f"{folder}: the phantom writes axial CT series only, got direction {grid.direction}")
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = generate_uid(entropy_srcs=[uid_seed, "ct-series"])
    for k in range(hu.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "ct-slice", str(k)])
        ds = slice_dataset(CT_IMAGE_STORAGE, sop_uid, patient_id, (study_uid, series_uid, frame_uid), when)
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", series_number, k + 1
        ds.SeriesDescription = description
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        set_axial_slice(ds, grid, k, hu[k])
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "HU"
        ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)
