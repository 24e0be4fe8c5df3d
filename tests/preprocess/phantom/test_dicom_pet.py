"""The phantom's PET DICOM series: real files, the SUV tags, and SUV that decodes to the phantom's volume."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.dicom_pet import F18_HALF_LIFE_S, write_pet_series
from preprocess.phantom.labels import StageLabels
from preprocess.phantom.scan import simulate_scan
from preprocess.suv import read_suv_series


@pytest.fixture(scope="module")
def dicom_scan(tmp_path_factory):
    grid = field_grid((240.0, 200.0, 160.0), 4.0)
    labels = StageLabels("R", 2, ("4R", "7"))
    scan = simulate_scan(np.random.default_rng(3), grid, labels, pet_factor=1, dicom_pet=True, day=2)
    folder = tmp_path_factory.mktemp("pet") / "pet_dicom"
    write_pet_series(folder, *scan.pet_dicom, scan.pet_grid, scan.acquisition, "demo-007", "demo-007-s0")
    return scan, folder


def _series(folder: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in folder.glob("*.dcm")), key=lambda ds: float(ds.ImagePositionPatient[2]))


def _hms(date: str, time: str) -> dt.datetime:
    return dt.datetime.strptime(date + time[:6], "%Y%m%d%H%M%S")


def test_series_carries_the_tags_suv_conversion_needs(dicom_scan):
    _, folder = dicom_scan
    for ds in _series(folder):
        assert ds.Modality == "PT" and ds.Units == "BQML" and ds.DecayCorrection == "START"
        assert {"ATTN", "DECY"} <= set(ds.CorrectedImage)
        assert 40.0 <= float(ds.PatientWeight) <= 120.0
        drug = ds.RadiopharmaceuticalInformationSequence[0]
        assert float(drug.RadionuclideHalfLife) == F18_HALF_LIFE_S
        assert float(drug.RadionuclideTotalDose) > 1e8
        injection = dt.datetime.strptime(drug.RadiopharmaceuticalStartDateTime, "%Y%m%d%H%M%S")
        assert 40 * 60 <= (_hms(ds.SeriesDate, ds.SeriesTime) - injection).total_seconds() <= 90 * 60
        assert _hms(ds.AcquisitionDate, ds.AcquisitionTime) == _hms(ds.SeriesDate, ds.SeriesTime)
        assert float(ds.RescaleIntercept) == 0.0 and float(ds.RescaleSlope) > 0.0
        assert ds.PatientName == "Phantom^demo-007"


def test_own_reading_of_the_tags_gives_the_phantom_suv(dicom_scan):
    scan, folder = dicom_scan
    series = _series(folder)
    ds = series[0]
    drug = ds.RadiopharmaceuticalInformationSequence[0]
    injection = dt.datetime.strptime(drug.RadiopharmaceuticalStartDateTime, "%Y%m%d%H%M%S")
    elapsed = (_hms(ds.SeriesDate, ds.SeriesTime) - injection).total_seconds()
    decayed = float(drug.RadionuclideTotalDose) * 2.0 ** (-elapsed / float(drug.RadionuclideHalfLife))
    factor = float(ds.PatientWeight) * 1000.0 / decayed
    bqml = np.stack([s.pixel_array * float(s.RescaleSlope) + float(s.RescaleIntercept) for s in series])
    np.testing.assert_allclose(bqml * factor, scan.suv, rtol=1e-3, atol=1e-5)
    assert scan.suv.max() > 3.0  # hot tumour and nodes are in the volume


def test_simpleitk_reads_the_series_with_the_phantom_geometry(dicom_scan):
    scan, folder = dicom_scan
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    image = reader.Execute()
    read = Grid.from_sitk(image)
    assert read.shape_zyx == scan.pet_grid.shape_zyx
    np.testing.assert_allclose(read.origin_mm, scan.pet_grid.origin_mm, atol=1e-4)
    np.testing.assert_allclose(read.spacing_mm, scan.pet_grid.spacing_mm, atol=1e-4)


def test_project_suv_converter_returns_the_phantom_suv(dicom_scan):
    scan, folder = dicom_scan
    image, _ = read_suv_series(folder)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), scan.suv, rtol=1e-3, atol=1e-5)
