"""A CT volume as a real DICOM series (int16 HU, one file per axial slice), beside the PET writer of dicom_pet.py.

Slices may be thinner than the simulation grid (`slice_mm`): the volume is then interpolated linearly along z,
as a scanner reconstructs thin slices from the same acquisition. All identifiers are synthetic.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cache.grid import Grid
from preprocess.phantom.dicom_pet import _ds

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
    nz, ny, nx = hu.shape
    for k in range(nz):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "ct-slice", str(k)])
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = CT_IMAGE_STORAGE, sop_uid
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = pydicom.Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = CT_IMAGE_STORAGE, sop_uid
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.PatientName, ds.PatientID, ds.PatientSex = f"Phantom^{patient_id}", patient_id, "O"
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "CT", series_number, k + 1
        ds.SeriesDescription = description
        ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
        ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.KVP = "120"
        position = grid.index_to_physical(np.array([k, 0, 0]))
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.PixelSpacing = [_ds(grid.spacing_mm[1]), _ds(grid.spacing_mm[0])]
        ds.SliceThickness = _ds(grid.spacing_mm[2])
        ds.SliceLocation = _ds(position[2])
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = "1", "0", "HU"
        ds.PixelData = np.ascontiguousarray(hu[k], dtype=np.int16).tobytes()
        ds.save_as(folder / f"{k + 1:04d}.dcm", enforce_file_format=True)
