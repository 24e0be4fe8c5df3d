"""A PET volume as a real DICOM series in Bq/ml, with the tags SUV conversion needs (IBSI/QIBA rules).

Units BQML, DecayCorrection START: voxel values are activity concentrations decay-corrected to the series
start, so SUVbw = value * weight_g / (dose_Bq * 2^(-(series time - injection time) / half-life)). Slices are
int16 with their own RescaleSlope. The SUV volume a phantom scan reports is the one these files decode to,
so a correct converter reproduces it to float precision. All identifiers are synthetic.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from cache.grid import Grid

F18_HALF_LIFE_S = 6586.2
PET_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.128"
INT16_MAX = 32767


@dataclass(frozen=True)
class PetAcquisition:
    """Patient weight, injected dose and the times SUV conversion reads."""

    weight_kg: float
    dose_bq: float
    injection: dt.datetime
    series_start: dt.datetime

    @property
    def decayed_dose_bq(self) -> float:
        elapsed = (self.series_start - self.injection).total_seconds()
        return self.dose_bq * 2.0 ** (-elapsed / F18_HALF_LIFE_S)

    @property
    def bqml_per_suv(self) -> float:
        """Activity concentration (Bq/ml) of one SUV unit."""
        return self.decayed_dose_bq / (self.weight_kg * 1000.0)


def draw_acquisition(rng: np.random.Generator, day: int) -> PetAcquisition:
    """Weight 50-110 kg, about 3.5 MBq/kg injected 50-80 min before the series starts."""
    weight = float(np.round(rng.uniform(50.0, 110.0), 1))
    dose = float(np.round(3.5e6 * weight * rng.uniform(0.9, 1.1), -4))
    start = dt.datetime(2024, 1, 8) + dt.timedelta(days=day, minutes=float(rng.integers(8 * 60, 16 * 60)))
    injection = start - dt.timedelta(seconds=int(rng.integers(50 * 60, 80 * 60)))
    return PetAcquisition(weight, dose, injection, start)


def encode_slices(suv: np.ndarray, acquisition: PetAcquisition) -> tuple[np.ndarray, np.ndarray]:
    """int16 stored values (z, y, x) and per-slice RescaleSlope (Bq/ml per unit) of an SUV volume."""
    bqml = suv.astype(np.float64) * acquisition.bqml_per_suv
    peak = bqml.reshape(bqml.shape[0], -1).max(axis=1)
    slopes = np.where(peak > 0, peak / INT16_MAX, 1.0)
    slopes = np.array([float(_ds(s)) for s in slopes])  # exactly what the header will say
    stored = np.clip(np.rint(bqml / slopes[:, None, None]), 0, INT16_MAX).astype(np.int16)
    return stored, slopes


def decode_slices(stored: np.ndarray, slopes: np.ndarray, acquisition: PetAcquisition) -> np.ndarray:
    """float32 SUV of stored values, as a correct converter computes it."""
    bqml = stored.astype(np.float64) * slopes[:, None, None]
    return (bqml / acquisition.bqml_per_suv).astype(np.float32)


def _ds(value: float) -> str:
    """A DICOM decimal string (at most 16 characters) that keeps as many digits as fit."""
    for digits in range(12, 4, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(f"cannot write {value!r} as a DICOM decimal string")


def write_pet_series(folder: Path, stored: np.ndarray, slopes: np.ndarray, grid: Grid,
                     acquisition: PetAcquisition, patient_id: str, uid_seed: str, study_uid: str | None = None,
                     frame_uid: str | None = None) -> None:
    """Write one file per slice (z order) into `folder`; UIDs are derived from `uid_seed` (deterministic), the
    study's and the frame of reference's unless given (a PET/CT study shares them with its CT series)."""
    folder.mkdir(parents=True, exist_ok=True)
    if grid.direction != (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0):
        raise ValueError(f"{folder}: the phantom writes axial PET series only, got direction {grid.direction}")
    study_uid = study_uid or generate_uid(entropy_srcs=[uid_seed, "study"])
    series_uid = generate_uid(entropy_srcs=[uid_seed, "series"])
    frame_uid = frame_uid or generate_uid(entropy_srcs=[uid_seed, "frame"])
    start = acquisition.series_start
    for k in range(stored.shape[0]):
        sop_uid = generate_uid(entropy_srcs=[uid_seed, "slice", str(k)])
        ds = slice_dataset(PET_IMAGE_STORAGE, sop_uid, patient_id, (study_uid, series_uid, frame_uid), start)
        ds.PatientWeight = _ds(acquisition.weight_kg)
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber = "PT", 2, k + 1
        ds.SeriesDescription = "synthetic PET (preprocess.phantom)"
        ds.Units, ds.DecayCorrection = "BQML", "START"
        ds.CorrectedImage = ["ATTN", "DECY", "SCAT", "DTIM", "NORM"]
        ds.ImageType = ["ORIGINAL", "PRIMARY"]
        drug = pydicom.Dataset()
        drug.Radiopharmaceutical = "Fluorodeoxyglucose"
        drug.RadionuclideTotalDose = _ds(acquisition.dose_bq)
        drug.RadionuclideHalfLife = _ds(F18_HALF_LIFE_S)
        drug.RadiopharmaceuticalStartDateTime = acquisition.injection.strftime("%Y%m%d%H%M%S")
        drug.RadiopharmaceuticalStartTime = acquisition.injection.strftime("%H%M%S")
        ds.RadiopharmaceuticalInformationSequence = Sequence([drug])
        set_axial_slice(ds, grid, k, stored[k])
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = _ds(slopes[k]), "0", "BQML"
        ds.save_as(folder / f"slice_{k + 1:04d}.dcm", enforce_file_format=True)


def slice_dataset(sop_class: str, sop_uid: str, patient_id: str, uids: tuple[str, str, str],
                  when: dt.datetime) -> pydicom.Dataset:
    """A slice's dataset with the tags every phantom series shares: file meta, synthetic patient, the study,
    series and frame-of-reference `uids`, and dates and times of `when`."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = pydicom.Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, sop_uid
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids
    ds.PatientName, ds.PatientID, ds.PatientSex = f"Phantom^{patient_id}", patient_id, "O"
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.AcquisitionTime = ds.ContentTime = when.strftime("%H%M%S")
    return ds


def set_axial_slice(ds: pydicom.Dataset, grid: Grid, k: int, pixels: np.ndarray) -> None:
    """Geometry of axial slice `k` of `grid` and its int16 (y, x) `pixels` (rescale tags are the caller's)."""
    position = grid.index_to_physical(np.array([k, 0, 0]))
    ds.ImagePositionPatient = [_ds(v) for v in position]
    ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
    ds.PixelSpacing = [_ds(grid.spacing_mm[1]), _ds(grid.spacing_mm[0])]
    ds.SliceThickness = _ds(grid.spacing_mm[2])
    ds.SliceLocation = _ds(position[2])
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(pixels, dtype=np.int16).tobytes()
