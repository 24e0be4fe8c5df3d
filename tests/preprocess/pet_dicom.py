"""Small PET DICOM series written with pydicom, for the SUV tests: a known activity and editable headers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, PositronEmissionTomographyImageStorage, generate_uid

PATIENT_NAME = "Doe^Janet^Quincey"
PATIENT_BIRTH_DATE = "19410317"
PATIENT_ID = "PID-7731-XQ"

WEIGHT_KG = 80.0
DOSE_BQ = 3.5e8
HALF_LIFE_S = 6586.2
DELAY_S = 3600.0  # injection 10:00:00, scan start 11:00:00
SHAPE_ZYX = (4, 6, 5)
SPACING_MM = (4.0, 3.0, 2.5)  # x, y, z
ORIGIN_MM = (-12.0, 30.5, -100.0)


def suv_volume() -> np.ndarray:
    """The SUVbw the written series must convert to, (z, y, x)."""
    z, y, x = np.indices(SHAPE_ZYX)
    return (0.5 + 0.25 * x + 0.1 * y + 0.7 * z).astype(np.float64)


def bqml_per_suv() -> float:
    """Activity concentration (Bq/ml, decay-corrected to the scan start) of SUV 1."""
    return DOSE_BQ * np.exp(-np.log(2) / HALF_LIFE_S * DELAY_S) / (WEIGHT_KG * 1000.0)


def pet_dataset(slice_index: int, series_uid: str, study_uid: str, frame_uid: str, stored: np.ndarray,
                slope: float) -> pydicom.Dataset:
    """One PET slice (BQML, DecayCorrection START, attenuation and decay corrected) with a patient identity."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = PositronEmissionTomographyImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "PT"
    ds.PatientName, ds.PatientBirthDate, ds.PatientID = PATIENT_NAME, PATIENT_BIRTH_DATE, PATIENT_ID
    ds.PatientSex, ds.PatientWeight, ds.PatientSize = "F", f"{WEIGHT_KG}", "1.68"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
    ds.SeriesDescription = "PET AC test"
    ds.SeriesDate = ds.AcquisitionDate = ds.StudyDate = "20240611"
    ds.SeriesTime = ds.AcquisitionTime = "110000.000000"
    ds.InstanceNumber = slice_index + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [ORIGIN_MM[0], ORIGIN_MM[1], ORIGIN_MM[2] + slice_index * SPACING_MM[2]]
    ds.PixelSpacing = [SPACING_MM[1], SPACING_MM[0]]  # row spacing (y), column spacing (x)
    ds.SliceThickness = SPACING_MM[2]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.RescaleIntercept, ds.RescaleSlope = "0", f"{slope:.10g}"
    ds.Units, ds.DecayCorrection = "BQML", "START"
    ds.CorrectedImage = ["NORM", "ATTN", "SCAT", "DECY", "RAN"]
    ds.ActualFrameDuration, ds.FrameReferenceTime = 300000, "150000"
    info = pydicom.Dataset()
    info.RadiopharmaceuticalStartDateTime = "20240611100000.000000"
    info.RadiopharmaceuticalStartTime = "100000.000000"
    info.RadionuclideTotalDose = f"{DOSE_BQ:.6g}"
    info.RadionuclideHalfLife = f"{HALF_LIFE_S}"
    ds.RadiopharmaceuticalInformationSequence = pydicom.Sequence([info])
    ds.PixelData = stored.astype(np.int16).tobytes()
    return ds


def write_pet_series(folder: Path, edit: Callable[[pydicom.Dataset, int], None] | None = None) -> Path:
    """Write the test series (per-slice rescale slopes) into `folder`; `edit(ds, z)` changes headers first."""
    folder.mkdir(parents=True, exist_ok=True)
    series_uid, study_uid, frame_uid = generate_uid(), generate_uid(), generate_uid()
    activity = suv_volume() * bqml_per_suv()
    for z in range(SHAPE_ZYX[0]):
        slope = activity[z].max() / 30000.0
        ds = pet_dataset(z, series_uid, study_uid, frame_uid, np.round(activity[z] / slope), slope)
        if edit is not None:
            edit(ds, z)
        ds.save_as(folder / f"slice_{z:03d}.dcm", enforce_file_format=True)
    return folder
