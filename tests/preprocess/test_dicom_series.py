"""DICOM series that SimpleITK would stack into a wrong volume are refused, naming the folder, slice and tag."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from preprocess.dicom_series import DicomSeriesError
from preprocess.images import read_image
from preprocess.suv import read_suv_series
from tests.preprocess import pet_dicom


def _on_slice(k: int, change):
    def edit(ds, z):
        if z == k:
            change(ds)
    return edit


def _set(keyword: str, value):
    return lambda ds: setattr(ds, keyword, value)


def _missing_slope(ds):
    del ds.RescaleSlope


@pytest.mark.parametrize(("edit", "message"), [
    (_on_slice(1, _missing_slope), r"slice 2 of 4 \(InstanceNumber 2\): RescaleSlope \(0028,1053\) is missing"),
    (_on_slice(1, _set("RescaleSlope", "0")), r"RescaleSlope \(0028,1053\) is '0'"),
    (_on_slice(2, _set("RescaleSlope", "NaN")), r"slice 3 of 4 .*RescaleSlope \(0028,1053\) is 'NaN'"),
    (_on_slice(3, _set("PatientID", "ANOTHER-PATIENT")), r"PatientID \(0010,0020\) differs from slice 1's"),
    (_on_slice(3, _set("ImageOrientationPatient", [0, 1, 0, 1, 0, 0])), r"ImageOrientationPatient .* differs"),
    (_on_slice(0, _set("ImagePositionPatient", [-12.0, 30.5, -101.0])), r"uneven slice spacing"),
])
def test_inconsistent_slices_are_refused(tmp_path: Path, edit, message: str):
    folder = pet_dicom.write_pet_series(tmp_path / "pet", edit)
    for read in (read_suv_series, read_image):
        with pytest.raises(DicomSeriesError, match=message) as raised:
            read(folder)
        text = str(raised.value)
        assert str(folder) in text and ".dcm" not in text and "ANOTHER-PATIENT" not in text
        assert pet_dicom.PATIENT_ID not in text


def test_a_missing_slice_is_refused(tmp_path: Path):
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    (folder / "slice_002.dcm").unlink()
    with pytest.raises(DicomSeriesError, match=r"are 5.000 mm apart, the series' step is 2.500 mm: 1 missing slice"):
        read_suv_series(folder)


def test_a_duplicated_slice_with_a_new_sop_uid_is_refused(tmp_path: Path):
    """It used to be stacked as a fifth slice, halving the z spacing."""
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    ds = pydicom.dcmread(folder / "slice_001.dcm")
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.InstanceNumber = 9
    ds.save_as(folder / "slice_001b.dcm", enforce_file_format=True)
    with pytest.raises(DicomSeriesError, match=r"lie at the same position .* a duplicated slice") as raised:
        read_image(folder)
    assert re.search(r"slice \d of 5", str(raised.value))


def test_a_sound_series_still_reads_with_its_spacing(tmp_path: Path):
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    image, _ = read_suv_series(folder)
    assert np.allclose(image.GetSpacing(), pet_dicom.SPACING_MM)


@pytest.mark.parametrize("victim", ["slice_000.dcm", "slice_003.dcm"])
def test_a_truncated_edge_slice_is_refused_not_dropped(tmp_path: Path, victim: str):
    """GDCM leaves a truncated file out of the series; at either end no gap shows, so it was silently dropped."""
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    content = (folder / victim).read_bytes()
    (folder / victim).write_bytes(content[:-20])
    for read in (read_suv_series, read_image):
        with pytest.raises(DicomSeriesError, match=r"1 DICOM image file\(s\) belong to no readable series"):
            read(folder)
