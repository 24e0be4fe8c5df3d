"""prepare_scan: one manifest row to cropped isotropic arrays, positions kept, errors naming scan and column."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cache.dataset import DatasetConfig
from cache.grid import Grid
from cache.manifest import ManifestRow
from preprocess.nifti_labels import write_with_label_extension
from preprocess.prepare import PrepareError, prepare_scan
from preprocess.suv import SuvSettings
from preprocess.totalseg_labels import label_ids, label_map
from tests.preprocess import pet_dicom

CT_GRID = Grid((34, 40, 40), (1.0, 1.0, 1.0), (-24.0, 18.0, -112.0))  # x -24..15, y 18..57, z -112..-79
LANDMARK_INDEX = (16, 20, 14)  # (z, y, x) of a bright CT voxel


def _image(array: np.ndarray, grid: Grid) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    grid.apply_to_sitk(image)
    return image


def _write_case(folder: Path, pet_edit=None) -> ManifestRow:
    folder.mkdir(parents=True, exist_ok=True)
    ct = np.full(CT_GRID.shape_zyx, -50, dtype=np.int16)
    ct[LANDMARK_INDEX] = 1500
    sitk.WriteImage(_image(ct, CT_GRID), str(folder / "ct.nii.gz"))
    ids = label_ids("v2")
    structures = np.zeros(CT_GRID.shape_zyx, dtype=np.uint8)
    structures[8:26, 10:30, 4:14] = ids["lung_upper_lobe_right"]
    structures[8:26, 10:30, 22:32] = ids["lung_upper_lobe_left"]
    structures[20:30, 18:22, 16:20] = ids["trachea"]
    structures[0:4, 0:4, 0:4] = ids["liver"]
    write_with_label_extension(_image(structures, CT_GRID), folder / "totalseg.nii.gz", label_map("v2"))
    lesions = np.zeros(CT_GRID.shape_zyx, dtype=np.uint8)
    lesions[12:14, 24:26, 8:10] = 1
    sitk.WriteImage(_image(lesions, CT_GRID), str(folder / "lesions.nii.gz"))
    pet_dicom.write_pet_series(folder / "pet", pet_edit)
    return ManifestRow(row=2, patient_id="P1", scan_id="S1", ct=folder / "ct.nii.gz", pet=folder / "pet",
                       totalseg=folder / "totalseg.nii.gz", lesions=folder / "lesions.nii.gz", tumor_side="R",
                       n_clinical=0, n_pathological=None, stations_clinical=(), stations_pathological=(),
                       split_group="")


DATASET = DatasetConfig(name="test", root="/", pet_nifti_is_suv=False, totalseg_version="auto")


def test_prepare_scan_crops_resamples_and_keeps_positions(tmp_path: Path):
    row = _write_case(tmp_path)
    scan = prepare_scan(row, DATASET, spacing_mm=2.0, crop_margin_mm=4.0, suv=SuvSettings())
    assert scan.grid.spacing_mm == (2.0, 2.0, 2.0)
    assert scan.ct_hu.dtype == np.int16 and scan.suv.dtype == np.float32 and scan.structures.dtype == np.uint8
    assert scan.ct_hu.shape == scan.suv.shape == scan.structures.shape == scan.lesions.shape == scan.grid.shape_zyx
    # lungs+trachea span z 8..29, y 10..29, x 4..31 (1 mm voxels) = 22 x 20 x 28 mm, plus 4 mm each side
    assert scan.grid.shape_zyx == (15, 14, 18)
    ids = label_ids("v2")
    assert ids["liver"] not in scan.structures  # outside the box
    wanted = {ids["trachea"], ids["lung_upper_lobe_left"], ids["lung_upper_lobe_right"]}
    assert wanted <= set(np.unique(scan.structures))
    # the bright CT voxel keeps its physical position (within one 2 mm voxel)
    landmark_mm = CT_GRID.index_to_physical(np.array(LANDMARK_INDEX))
    brightest = np.unravel_index(np.argmax(scan.ct_hu), scan.ct_hu.shape)
    assert np.abs(scan.grid.index_to_physical(np.array(brightest)) - landmark_mm).max() <= 1.0
    lesion_mm = scan.grid.index_to_physical(np.argwhere(scan.lesions > 0).mean(axis=0))
    np.testing.assert_allclose(lesion_mm, CT_GRID.index_to_physical(np.array([12.5, 24.5, 8.5])), atol=1.0)
    # PET: a linear SUV field, so linear interpolation is exact inside the PET voxel centres
    pet_grid = Grid(pet_dicom.SHAPE_ZYX, pet_dicom.SPACING_MM, pet_dicom.ORIGIN_MM)
    index = np.argwhere(np.ones(scan.grid.shape_zyx, dtype=bool))
    pet_index = pet_grid.physical_to_index(scan.grid.index_to_physical(index))
    inside = np.all((pet_index >= 0) & (pet_index <= np.array(pet_dicom.SHAPE_ZYX) - 1), axis=1)
    assert inside.sum() > 20
    z, y, x = pet_index[inside].T
    expected = 0.5 + 0.25 * x + 0.1 * y + 0.7 * z  # pet_dicom.suv_volume() at continuous indices
    np.testing.assert_allclose(scan.suv.reshape(-1)[inside], expected, rtol=1e-3)
    assert (scan.suv.reshape(-1)[~np.all((pet_index >= -0.5) & (pet_index <= np.array(pet_dicom.SHAPE_ZYX) - 0.5),
                                         axis=1)] == 0).all()
    assert scan.provenance["inputs"]["pet"] == str(row.pet)
    assert "DecayCorrection START" in scan.provenance["suv"]["suv_rule"][0]
    assert scan.provenance["totalseg"]["naming"] == "NIfTI header label table"
    assert {"read_ct", "read_pet_suv", "totalseg", "crop", "resample_ct", "resample_pet"} <= set(scan.timings_s)


def test_errors_name_scan_column_file_and_tag(tmp_path: Path):
    row = _write_case(tmp_path, lambda ds, z: delattr(ds, "PatientWeight"))
    with pytest.raises(PrepareError, match=r"scan 'S1' \(manifest row 2\), column 'pet', file .*pet: "
                                           r".*pet, slice 1 of 4 \(InstanceNumber 1\): "
                                           r"PatientWeight \(0010,1030\) is missing"):
        prepare_scan(row, DATASET, 2.0, 4.0, SuvSettings())
    scan = prepare_scan(row, DATASET, 2.0, 4.0, SuvSettings(patient_weight_kg=pet_dicom.WEIGHT_KG))
    assert scan.provenance["fallbacks"] == [f"patient_weight_kg={pet_dicom.WEIGHT_KG} from settings"]


def test_missing_masks_and_bad_lesions_are_refused(tmp_path: Path, monkeypatch):
    row = _write_case(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin"))
    with pytest.raises(PrepareError, match=r"column 'totalseg', .*expected a multilabel file"):
        prepare_scan(replace(row, totalseg=tmp_path / "none.nii.gz"), DATASET, 2.0, 4.0, SuvSettings())
    bad = np.full(CT_GRID.shape_zyx, 0.5, dtype=np.float32)
    sitk.WriteImage(_image(bad, CT_GRID), str(tmp_path / "soft.nii.gz"))
    with pytest.raises(PrepareError, match=r"column 'lesions', .*integer labels 0-255"):
        prepare_scan(replace(row, lesions=tmp_path / "soft.nii.gz"), DATASET, 2.0, 4.0, SuvSettings())


def test_pet_elsewhere_is_refused(tmp_path: Path):
    def far_away(ds, z):
        ds.ImagePositionPatient = [500.0, 500.0, 500.0 + z * pet_dicom.SPACING_MM[2]]

    row = _write_case(tmp_path, far_away)
    with pytest.raises(PrepareError, match="does not overlap the mediastinum box"):
        prepare_scan(row, DATASET, 2.0, 4.0, SuvSettings())


def _write_ras_copy(row: ManifestRow, folder: Path) -> ManifestRow:
    """The case's CT, masks and lesions stored RAS (x and y flipped), the PET DICOM as it is."""
    folder.mkdir()
    for name in ("ct", "lesions"):
        image = sitk.DICOMOrient(sitk.ReadImage(str(getattr(row, name))), "RAS")
        sitk.WriteImage(image, str(folder / f"{name}.nii.gz"))
    masks = sitk.DICOMOrient(sitk.ReadImage(str(row.totalseg)), "RAS")
    write_with_label_extension(masks, folder / "totalseg.nii.gz", label_map("v2"))
    return replace(row, ct=folder / "ct.nii.gz", totalseg=folder / "totalseg.nii.gz", lesions=folder / "lesions.nii.gz")


def test_a_scan_stored_ras_is_cached_as_the_same_lps_arrays(tmp_path: Path):
    """Patches of an RAS-stored copy came out mirrored in x and y against the LPS original."""
    row = _write_case(tmp_path / "lps")
    ras = _write_ras_copy(row, tmp_path / "ras")
    assert sitk.ReadImage(str(ras.ct)).GetDirection()[:5] == (-1.0, 0.0, 0.0, 0.0, -1.0)
    a, b = (prepare_scan(r, DATASET, spacing_mm=2.0, crop_margin_mm=4.0, suv=SuvSettings()) for r in (row, ras))
    assert a.grid.direction == b.grid.direction == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
    np.testing.assert_allclose(a.grid.origin_mm, b.grid.origin_mm, atol=1e-4)
    np.testing.assert_array_equal(a.ct_hu, b.ct_hu)
    np.testing.assert_array_equal(a.structures, b.structures)
    np.testing.assert_array_equal(a.lesions, b.lesions)
    np.testing.assert_allclose(a.suv, b.suv, atol=1e-4)
