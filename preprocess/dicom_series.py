"""DICOM series folders: pick one series (by UID, or the only one of a modality) and read it with SimpleITK.

SimpleITK (GDCM) sorts the slices along their normal, decodes compressed transfer syntaxes (JPEG, JPEG-LS,
JPEG 2000, RLE) and sets origin, spacing and direction from the headers. Images are returned without any
metadata: DICOM tags (names, birth dates, IDs, UIDs) never travel with the pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

# Slice spacing must agree with the median step to this fraction (or SPACING_TOLERANCE_MM, the larger): a
# missing slice doubles one step, a duplicate makes one zero, and SimpleITK would stack either as uniform.
SPACING_TOLERANCE = 0.01
SPACING_TOLERANCE_MM = 0.01
ORIENTATION_TOLERANCE = 1e-4
# Elements that must be equal in every slice of a series: a slice that differs belongs to another patient,
# study or frame of reference. Compared, never printed (they identify the patient).
IDENTITY_TAGS = (("PatientID", "(0010,0020)"), ("PatientName", "(0010,0010)"), ("StudyInstanceUID", "(0020,000D)"),
                 ("FrameOfReferenceUID", "(0020,0052)"))


class DicomSeriesError(ValueError):
    """A folder without the requested DICOM series, or with several to choose from."""


@dataclass(frozen=True)
class SeriesSummary:
    """What a series is, for choosing and for messages: never its UID or the patient's identity."""

    modality: str
    description: str
    n_files: int


def strip_metadata(image: sitk.Image) -> sitk.Image:
    """`image` with its metadata dictionary emptied (in place), so no DICOM tag reaches a written file."""
    for key in image.GetMetaDataKeys():
        image.EraseMetaData(key)
    return image


def _summary(files: tuple[str, ...]) -> SeriesSummary:
    header = pydicom.dcmread(files[0], stop_before_pixels=True)
    return SeriesSummary(str(header.get("Modality", "?")), str(header.get("SeriesDescription", "")), len(files))


def _check_unlisted(folder: Path, listed: set[str]) -> None:
    """Refuse a folder holding image slices that GDCM left out of every series: it drops a truncated or damaged
    file silently, and a dropped first or last slice leaves no gap to notice. Non-image objects (RTSTRUCT, SEG
    without pixel data) are left alone."""
    listed = {str(Path(f).resolve()) for f in listed}
    unreadable = 0
    for path in folder.iterdir():
        if not path.is_file() or str(path.resolve()) in listed:
            continue
        with open(path, "rb") as f:
            if f.read(132)[128:132] != b"DICM":
                continue
        try:
            header = pydicom.dcmread(path, stop_before_pixels=True)
        except Exception:  # noqa: BLE001 -- a DICOM file whose header cannot be parsed: counted as damaged
            unreadable += 1
            continue
        if "Rows" in header:
            unreadable += 1
    if unreadable:
        raise DicomSeriesError(f"{folder}: {unreadable} DICOM image file(s) belong to no readable series (truncated "
                               "or damaged; GDCM would leave them out silently); copy the series again or remove "
                               "them")


def series_files(folder: Path, series_uid: str | None = None, modality: str | None = None) -> tuple[str, ...]:
    """Sorted file names of one series in `folder`: the one with `series_uid`, else the only series (of
    `modality`, e.g. "CT" or "PT", when given). Several candidates are an error listing them (without UIDs)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DicomSeriesError(f"{folder}: not a folder; a DICOM series is read from the folder of its files")
    uids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder))
    if not uids:
        raise DicomSeriesError(f"{folder}: no DICOM series found (files directly in this folder are read)")
    if series_uid is not None:
        _check_unlisted(folder, {f for uid in uids
                                 for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)})
        if series_uid not in uids:
            raise DicomSeriesError(
                f"{folder}: no series with the SeriesInstanceUID (0020,000E) given; {len(uids)} series there"
            )
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
    candidates = {uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}
    _check_unlisted(folder, {f for files in candidates.values() for f in files})
    if modality is not None:
        candidates = {uid: f for uid, f in candidates.items() if _summary(f).modality == modality}
    if len(candidates) == 1:
        return next(iter(candidates.values()))
    wanted = f" of modality {modality}" if modality else ""
    listing = "; ".join(
        f"#{i + 1}: {s.modality} {s.description!r}, {s.n_files} file(s)"
        for i, s in enumerate(_summary(files) for files in candidates.values())
    )
    found = listing or "none"
    raise DicomSeriesError(
        f"{folder}: {len(candidates)} series{wanted} ({found}); give the SeriesInstanceUID (0020,000E) of the one "
        "to use (series_uid), or keep one series per folder"
    )


def _slice_name(folder: Path, k: int, n: int, ds: pydicom.Dataset) -> str:
    """A slice as messages name it: folder, place in the series and InstanceNumber, never the file name (often
    a UID) nor any identity."""
    return f"{folder}, slice {k + 1} of {n} (InstanceNumber {ds.get('InstanceNumber', 'missing')})"


def _floats(ds: pydicom.Dataset, keyword: str, count: int) -> np.ndarray | None:
    values = ds.get(keyword)
    try:
        array = np.asarray([float(v) for v in (values if values is not None else ())], dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return array if array.shape == (count,) and np.all(np.isfinite(array)) else None


def check_series_headers(headers: list[pydicom.Dataset], folder: Path) -> None:
    """Refuse a series that SimpleITK would stack into a wrong volume: slices of another patient, study or frame
    of reference; more than one orientation; missing, duplicated or unevenly spaced slice positions; a
    RescaleSlope that is missing, zero or not a finite number (it would be taken as 1)."""
    n = len(headers)
    first = headers[0]
    for k, ds in enumerate(headers):
        where = _slice_name(folder, k, n, ds)
        for keyword, tag in IDENTITY_TAGS:
            if str(ds.get(keyword, "")) != str(first.get(keyword, "")):
                raise DicomSeriesError(f"{where}: {keyword} {tag} differs from slice 1's, though both carry one "
                                       "SeriesInstanceUID; the folder mixes two scans: remove the foreign files")
        slope = ds.get("RescaleSlope")
        try:
            slope_value = float(slope) if slope is not None and str(slope).strip() else None
        except (TypeError, ValueError):
            slope_value = math.nan
        if slope_value is None or not math.isfinite(slope_value) or slope_value == 0:
            state = "missing" if slope_value is None else repr(str(slope))
            raise DicomSeriesError(f"{where}: RescaleSlope (0028,1053) is {state}; the slice's values cannot be "
                                   "scaled (it would be taken as 1): repair or remove the slice")
    orientations = [_floats(ds, "ImageOrientationPatient", 6) for ds in headers]
    positions = [_floats(ds, "ImagePositionPatient", 3) for ds in headers]
    for k, (orientation, position) in enumerate(zip(orientations, positions, strict=True)):
        if orientation is None or position is None:
            tag = "ImageOrientationPatient (0020,0037)" if orientation is None else "ImagePositionPatient (0020,0032)"
            raise DicomSeriesError(f"{_slice_name(folder, k, n, headers[k])}: {tag} is missing or not numeric; "
                                   "the slice cannot be placed")
        if np.abs(orientation - orientations[0]).max() > ORIENTATION_TOLERANCE:
            raise DicomSeriesError(f"{_slice_name(folder, k, n, headers[k])}: ImageOrientationPatient (0020,0037) "
                                   f"{orientation.tolist()} differs from slice 1's {orientations[0].tolist()}; one "
                                   "series must have one orientation")
    _check_spacing(np.asarray(positions) @ np.cross(orientations[0][:3], orientations[0][3:]), headers, folder)


def _check_spacing(along_normal_mm: np.ndarray, headers: list[pydicom.Dataset], folder: Path) -> None:
    """Slice positions along the normal: no two equal, every step the series' step (its smallest one)."""
    n = len(headers)
    if n < 2:
        return
    order = np.argsort(along_normal_mm, kind="stable")
    steps = np.diff(along_normal_mm[order])
    distinct = steps[steps > SPACING_TOLERANCE_MM]
    step = float(distinct.min()) if len(distinct) else 0.0
    tolerance = max(SPACING_TOLERANCE_MM, SPACING_TOLERANCE * step)
    bad = np.flatnonzero(np.abs(steps - step) > tolerance)
    if not len(bad):
        return
    j = int(bad[0])
    a, b = int(order[j]), int(order[j + 1])
    where = f"{_slice_name(folder, a, n, headers[a])} and slice {b + 1}"
    if steps[j] <= SPACING_TOLERANCE_MM:
        raise DicomSeriesError(f"{where} lie at the same position ({along_normal_mm[a]:.2f} mm along the slice "
                               "normal): a duplicated slice; remove one of them")
    multiple = steps[j] / step
    kind = (f"{round(multiple) - 1} missing slice(s)" if abs(multiple - round(multiple)) * step <= tolerance
            else "uneven slice spacing")
    raise DicomSeriesError(f"{where} are {steps[j]:.3f} mm apart, the series' step is {step:.3f} mm: {kind} "
                           "(ImagePositionPatient (0020,0032)); complete the series or remove the odd slices")


def read_headers(files: tuple[str, ...], folder: Path) -> list[pydicom.Dataset]:
    """The headers of a series' files (no pixel data), checked with `check_series_headers`."""
    headers = [pydicom.dcmread(f, stop_before_pixels=True) for f in files]
    check_series_headers(headers, Path(folder))
    return headers


def read_series(files: tuple[str, ...], pixel_type: int | None = None) -> sitk.Image:
    """The series as one image (geometry from the headers), modality values (each slice's RescaleSlope and
    RescaleIntercept applied) in `pixel_type` (SimpleITK's choice when None); no metadata."""
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(list(files))
    reader.MetaDataDictionaryArrayUpdateOff()
    reader.LoadPrivateTagsOff()
    if pixel_type is not None:
        reader.SetOutputPixelType(pixel_type)
    return strip_metadata(reader.Execute())
