"""Reading CT/PET: the real JPEG-2000 CT series, series choice, image files with exact geometry, PET as SUV."""

from __future__ import annotations

import re
from itertools import product
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from preprocess.dicom_series import DicomSeriesError
from preprocess.images import ImageReadError, read_image, read_pet_suv
from preprocess.suv import SuvSettings
from tests.preprocess import pet_dicom


def _corners_mm(image: sitk.Image) -> np.ndarray:
    size = image.GetSize()
    corners = [image.TransformIndexToPhysicalPoint([c * (n - 1) for c, n in zip(pick, size, strict=True)])
               for pick in product((0, 1), repeat=3)]
    return np.array(sorted(corners))


def test_real_ct_series_has_the_geometry_of_its_totalsegmentator_mask(shared_data: Path):
    folder = shared_data / "ct" / "totalsegmentator" / "dicom_series"
    first = pydicom.dcmread(next((folder / "ct").iterdir()), stop_before_pixels=True)
    assert first.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"  # JPEG 2000 lossless
    ct = read_image(folder / "ct")
    mask = sitk.ReadImage(str(folder / "totalseg_multilabel.nii.gz"))
    assert ct.GetSize() == mask.GetSize() == (512, 512, 20)
    np.testing.assert_allclose(ct.GetSpacing(), mask.GetSpacing(), atol=1e-6)
    # the mask stores the rows in the other order (y axis flipped): the same voxel centres in space
    np.testing.assert_allclose(_corners_mm(ct), _corners_mm(mask), atol=1e-3)
    assert ct.GetMetaDataKeys() == ()
    hu = sitk.GetArrayViewFromImage(ct)
    assert hu.min() <= -1000 and 1000 < hu.max() < 4000  # rescaled to HU: air and bone


def test_folder_with_two_series_needs_a_choice(tmp_path: Path):
    folder = pet_dicom.write_pet_series(tmp_path / "mixed")

    def as_ct(ds, z):
        ds.Modality, ds.SeriesDescription = "CT", "CT thorax"
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()

    pet_dicom.write_pet_series(tmp_path / "ct", as_ct)
    for path in (tmp_path / "ct").iterdir():
        path.rename(folder / f"ct_{path.name}")
    ct_uid = pydicom.dcmread(folder / "ct_slice_000.dcm").SeriesInstanceUID
    with pytest.raises(DicomSeriesError, match=r"2 series \(#1: .* file\(s\); #2: .*\); give the SeriesInstanceUID"
                       ) as raised:
        read_image(folder)
    assert ct_uid not in str(raised.value)
    assert read_image(folder, series_uid=ct_uid).GetSize() == (5, 6, 4)
    assert read_image(folder, modality="CT").GetSize() == (5, 6, 4)
    suv, provenance = read_pet_suv(folder, SuvSettings(), pet_nifti_is_suv=False)  # picks the PT series
    np.testing.assert_allclose(sitk.GetArrayFromImage(suv), pet_dicom.suv_volume(), rtol=1e-4)
    with pytest.raises(DicomSeriesError, match="no series with the SeriesInstanceUID"):
        read_image(folder, series_uid="1.2.3")


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_image_files_keep_their_geometry(tmp_path: Path, suffix: str):
    image = sitk.GetImageFromArray(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    image.SetSpacing((0.8, 1.25, 3.0))
    image.SetOrigin((-120.5, 33.25, -700.0))
    angle = np.deg2rad(12)
    image.SetDirection((np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0, 0, 0, 1))
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    read = read_image(path)
    tolerance = 1e-5 if suffix == ".nii.gz" else 0  # NIfTI stores geometry as float32
    np.testing.assert_allclose(read.GetSpacing(), image.GetSpacing(), atol=tolerance)
    np.testing.assert_allclose(read.GetOrigin(), image.GetOrigin(), atol=tolerance * 1000)
    np.testing.assert_allclose(read.GetDirection(), image.GetDirection(), atol=tolerance)
    np.testing.assert_array_equal(sitk.GetArrayViewFromImage(read), sitk.GetArrayViewFromImage(image))


def test_pet_image_file_is_suv_only_when_the_config_says_so(tmp_path: Path):
    path = tmp_path / "pet.nii.gz"
    sitk.WriteImage(sitk.GetImageFromArray(np.full((2, 3, 4), 2.5, dtype=np.float64)), str(path))
    with pytest.raises(ImageReadError, match="set pet_nifti_is_suv = true"):
        read_pet_suv(path, SuvSettings(), pet_nifti_is_suv=False)
    suv, provenance = read_pet_suv(path, SuvSettings(), pet_nifti_is_suv=True)
    assert suv.GetPixelID() == sitk.sitkFloat32
    assert "pet_nifti_is_suv" in provenance["suv_rule"][0]


def test_unreadable_paths_are_refused(tmp_path: Path):
    with pytest.raises(ImageReadError, match="no such file or folder"):
        read_image(tmp_path / "missing.nii.gz")
    dicom_file = pet_dicom.write_pet_series(tmp_path / "pet") / "slice_000.dcm"
    with pytest.raises(ImageReadError, match="for DICOM give the folder of the series"):
        read_image(dicom_file)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomSeriesError, match="no DICOM series found"):
        read_image(tmp_path / "empty")


@pytest.mark.parametrize("keep", [0.5, 0.999])
def test_a_truncated_nifti_gz_is_refused_not_zero_filled(shared_data: Path, tmp_path: Path, keep: float):
    """The real CT cut short: SimpleITK used to read it with the missing part as zeros."""
    source = shared_data / "ct" / "totalsegmentator" / "mediastinum_crop" / "ct_cropped.nii.gz"
    path = tmp_path / "ct.nii.gz"
    content = source.read_bytes()
    path.write_bytes(content[: int(len(content) * keep)])
    with pytest.raises(ImageReadError, match=rf"{path}: cannot be read to its end .* copy it again"):
        read_image(path)
    assert read_image(source).GetSize() == (120, 126, 164)


def test_a_truncated_plain_nifti_is_refused(tmp_path: Path):
    path = tmp_path / "ct.nii"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((6, 7, 8), dtype=np.int16)), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ImageReadError, match=r"holds \d+ bytes of header and voxels, its header needs \d+"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd"])
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_voxels_are_refused_in_ct_and_pet(tmp_path: Path, bad: float, suffix: str):
    """SimpleITK reads a NIfTI NaN as 0: the file itself is checked."""
    values = np.full((3, 4, 5), 1.5, dtype=np.float32)
    values[1, 2, 3] = bad
    path = tmp_path / f"pet{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(values), str(path))
    with pytest.raises(ImageReadError, match=rf"pet{re.escape(suffix)}: 1 voxel\(s\) are NaN or infinite"):
        read_pet_suv(path, SuvSettings(), pet_nifti_is_suv=True)
    with pytest.raises(ImageReadError, match="NaN or infinite"):
        read_image(path)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_truncated_nrrd_and_mha_files_are_refused(tmp_path: Path, suffix: str):
    """SimpleITK itself notices these (only NIfTI needed our check)."""
    path = tmp_path / f"pet{suffix}"
    sitk.WriteImage(sitk.GetImageFromArray(np.ones((20, 30, 40), dtype=np.float32)), str(path), useCompression=True)
    path.write_bytes(path.read_bytes()[:-50])
    with pytest.raises(ImageReadError, match=rf"{path}: SimpleITK cannot read it"):
        read_image(path)
