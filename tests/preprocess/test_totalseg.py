"""TotalSegmentator masks mapped by structure name to canonical v2 ids on the CT grid."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.images import read_image
from preprocess.nifti_labels import read_label_extension, write_with_label_extension
from preprocess.resample import resample_to_spacing
from preprocess.totalseg import TotalSegError, load_totalseg, read_totalseg
from preprocess.totalseg_labels import label_ids, label_map

PRESENT = {
    "spleen", "liver", "stomach", "pancreas", "adrenal_gland_right", "colon", "vertebrae_T12", "vertebrae_T11",
    "aorta", "inferior_vena_cava", "portal_vein_and_splenic_vein", "humerus_left", "humerus_right", "spinal_cord",
    "autochthon_left", "autochthon_right", "costal_cartilages",
    *(f"rib_{side}_{i}" for side in ("left", "right") for i in range(6, 13)),
}


@pytest.fixture(scope="module")
def real(shared_data: Path):
    folder = shared_data / "ct" / "totalsegmentator" / "dicom_series"
    ct = read_image(folder / "ct")
    return folder / "totalseg_multilabel.nii.gz", ct


def _names(labels: sitk.Image) -> set[str]:
    return {label_map("v2")[int(i)] for i in np.unique(sitk.GetArrayViewFromImage(labels)) if i}


def _centroid_mm(labels: np.ndarray, grid: Grid, name: str) -> np.ndarray:
    return grid.index_to_physical(np.argwhere(labels == label_ids("v2")[name]).mean(axis=0))


def test_real_mask_maps_to_the_right_structures_on_the_ct_grid(real):
    path, ct = real
    masks = load_totalseg(path, ct)
    assert masks.naming == "NIfTI header label table" and masks.resampled  # its rows are stored flipped
    assert masks.image.GetPixelID() == sitk.sitkUInt8
    assert Grid.from_sitk(masks.image) == Grid.from_sitk(ct)
    assert _names(masks.image) == PRESENT
    labels, hu, grid = sitk.GetArrayFromImage(masks.image), sitk.GetArrayFromImage(ct), Grid.from_sitk(ct)
    # LPS: the patient's left is +x; the liver lies right, the spleen left, the spinal cord behind the aorta
    assert _centroid_mm(labels, grid, "liver")[0] < 0 < _centroid_mm(labels, grid, "spleen")[0]
    assert _centroid_mm(labels, grid, "humerus_right")[0] < 0 < _centroid_mm(labels, grid, "humerus_left")[0]
    assert _centroid_mm(labels, grid, "spinal_cord")[1] > _centroid_mm(labels, grid, "aorta")[1]
    assert hu[labels == label_ids("v2")["vertebrae_T12"]].mean() > 150  # bone
    assert hu[labels == label_ids("v2")["colon"]].mean() < -200  # gas
    raw = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(labels, raw[:, ::-1, :])  # nearest-neighbour onto the same voxel centres


def test_header_label_table_is_what_names_the_ids(real, tmp_path: Path):
    path, ct = real
    table = read_label_extension(path)
    assert table == label_map("v2")
    swapped = dict(table) | {1: "liver", 5: "spleen"}
    relabelled = tmp_path / "swapped.nii.gz"
    write_with_label_extension(sitk.ReadImage(str(path)), relabelled, swapped)
    original = sitk.GetArrayFromImage(read_totalseg(path, ct))
    result = sitk.GetArrayFromImage(read_totalseg(relabelled, ct))
    ids = label_ids("v2")
    np.testing.assert_array_equal(result == ids["liver"], original == ids["spleen"])
    with pytest.raises(TotalSegError, match="its header label table says id 1 is 'liver', but TotalSegmentator v2"):
        read_totalseg(relabelled, ct, version="v2")


def test_without_a_label_table_the_version_setting_decides(real, tmp_path: Path):
    path, ct = real
    bare = tmp_path / "bare.nii.gz"
    sitk.WriteImage(sitk.ReadImage(str(path)), str(bare))
    assert read_label_extension(bare) is None
    with pytest.raises(TotalSegError, match="set totalseg_version to 'v1' or 'v2'"):
        read_totalseg(bare, ct)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(read_totalseg(bare, ct, "v2")),
                                  sitk.GetArrayFromImage(read_totalseg(path, ct)))


def test_v1_ids_map_to_v2_by_name(real, tmp_path: Path):
    path, ct = real
    v2 = sitk.GetArrayFromImage(read_totalseg(path, ct))
    to_v1 = np.zeros(256, dtype=np.uint8)
    for name, v1_id in label_ids("v1").items():
        if name in label_ids("v2"):
            to_v1[label_ids("v2")[name]] = v1_id
    v1_image = sitk.GetImageFromArray(to_v1[v2])
    v1_image.CopyInformation(ct)
    v1_path = tmp_path / "v1.nii.gz"
    sitk.WriteImage(v1_image, str(v1_path))
    result = sitk.GetArrayFromImage(read_totalseg(v1_path, ct, "v1"))
    expected = np.where(to_v1[v2] > 0, v2, 0)  # spinal_cord and costal_cartilages are not v1 classes
    np.testing.assert_array_equal(result, expected)
    assert _names(read_totalseg(v1_path, ct, "v1")) == PRESENT - {"spinal_cord", "costal_cartilages"}


def _small_reference() -> sitk.Image:
    reference = sitk.Image([8, 8, 8], sitk.sitkInt16)
    reference.SetSpacing((2.0, 2.0, 2.0))
    reference.SetOrigin((-8.0, -8.0, -8.0))
    return reference


def test_v1_heart_chambers_become_v2_heart_and_pulmonary_artery_is_dropped(tmp_path: Path):
    reference = _small_reference()
    v1 = label_ids("v1")
    array = np.zeros((8, 8, 8), dtype=np.uint8)
    array[1:3, 1:3, 1:3] = v1["heart_myocardium"]
    array[3:5, 1:3, 1:3] = v1["heart_ventricle_left"]
    array[5:7, 5:7, 5:7] = v1["pulmonary_artery"]
    array[0, 7, 7] = v1["trachea"]
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(tmp_path / "v1.nii.gz"))
    masks = load_totalseg(tmp_path / "v1.nii.gz", reference, "v1")
    result = sitk.GetArrayFromImage(masks.image)
    assert (result[1:5, 1:3, 1:3] == label_ids("v2")["heart"]).all()
    assert (result[5:7, 5:7, 5:7] == 0).all()
    assert result[0, 7, 7] == label_ids("v2")["trachea"]
    assert masks.dropped == ("pulmonary_artery",)


def test_folder_of_structure_files_on_another_grid(tmp_path: Path):
    reference = _small_reference()
    fine = resample_to_spacing(reference, 1.0, "nearest")
    for name, box in {"trachea": np.s_[0:6, 4:10, 4:10], "heart_atrium_left": np.s_[8:14, 2:8, 8:14]}.items():
        array = np.zeros(fine.GetSize()[::-1], dtype=np.uint8)
        array[box] = 1
        mask = sitk.GetImageFromArray(array)
        mask.CopyInformation(fine)
        sitk.WriteImage(mask, str(tmp_path / f"{name}.nii.gz"))
    masks = load_totalseg(tmp_path, reference)
    assert masks.resampled and masks.naming == "file names"
    result = sitk.GetArrayFromImage(masks.image)
    assert (result[0:3, 2:5, 2:5] == label_ids("v2")["trachea"]).all()
    assert (result[4:7, 1:4, 4:7] == label_ids("v2")["heart"]).all()
    assert ((result > 0).sum()) == 27 + 27
    sitk.WriteImage(mask, str(tmp_path / "lung_vessels.nii.gz"))
    with pytest.raises(TotalSegError, match="lung_vessels are not TotalSegmentator 'total' structure names"):
        load_totalseg(tmp_path, reference)


def test_unnamed_id_is_refused(tmp_path: Path):
    reference = _small_reference()
    array = np.zeros((8, 8, 8), dtype=np.uint8)
    array[0, 0, 0] = 200
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(tmp_path / "odd.nii.gz"))
    with pytest.raises(TotalSegError, match="label id 200 has no name"):
        read_totalseg(tmp_path / "odd.nii.gz", reference, "v2")


def test_missing_masks_without_the_command_name_the_expected_file(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    expected = tmp_path / "scan" / "totalseg.nii.gz"
    with pytest.raises(TotalSegError, match=f"expected a multilabel file {expected}.*not on PATH"):
        read_totalseg(expected, _small_reference(), ct_path=tmp_path / "ct.nii.gz")


def test_missing_masks_are_made_by_the_totalsegmentator_command(tmp_path: Path, monkeypatch):
    """A stand-in `TotalSegmentator` executable (the real one needs model weights) checks the call."""
    reference = _small_reference()
    ct_path = tmp_path / "ct.nii.gz"
    sitk.WriteImage(reference, str(ct_path))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "TotalSegmentator"
    script.write_text(
        f"#!{sys.executable}\n"
        "import sys, numpy as np, SimpleITK as sitk\n"
        "from preprocess.nifti_labels import write_with_label_extension\n"
        "from preprocess.totalseg_labels import label_map\n"
        "args = sys.argv[1:]\n"
        "assert args[4:] == ['--ml'], args\n"
        "ct = sitk.ReadImage(args[args.index('-i') + 1])\n"
        "labels = np.zeros(ct.GetSize()[::-1], np.uint8); labels[2:4, 2:4, 2:4] = 16\n"
        "image = sitk.GetImageFromArray(labels); image.CopyInformation(ct)\n"
        "write_with_label_extension(image, args[args.index('-o') + 1], label_map('v2'))\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    out = tmp_path / "made" / "totalseg.nii.gz"
    labels = sitk.GetArrayFromImage(read_totalseg(out, reference, ct_path=ct_path))
    assert out.is_file()
    assert (labels == label_ids("v2")["trachea"]).sum() == 8
