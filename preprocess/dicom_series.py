"""DICOM series folders: pick one series (by UID, or the only one of a modality) and read it with SimpleITK.

SimpleITK (GDCM) sorts the slices along their normal, decodes compressed transfer syntaxes (JPEG, JPEG-LS,
JPEG 2000, RLE) and sets origin, spacing and direction from the headers. Images are returned without any
metadata: DICOM tags (names, birth dates, IDs, UIDs) never travel with the pixels.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pydicom
import SimpleITK as sitk


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
        if series_uid not in uids:
            raise DicomSeriesError(
                f"{folder}: no series with the SeriesInstanceUID (0020,000E) given; {len(uids)} series there"
            )
        return tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), series_uid))
    candidates = {uid: tuple(sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), uid)) for uid in uids}
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
