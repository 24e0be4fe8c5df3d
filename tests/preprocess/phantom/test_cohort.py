"""The written cohort: manifest, labels consistent with the rule set, files, truth and atlases."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from cache.dataset import stage_overrides
from cache.manifest import read_manifest
from cache.settings import from_toml, values_from_mapping
from cache.stations import n_stage, station
from preprocess.nifti_labels import read_label_extension
from preprocess.phantom.__main__ import cli, main
from preprocess.phantom.cohort import _chosen, cohort_is_complete, generate_cohort
from preprocess.phantom.nodes import FIELD_EDGE_MARGIN_MM
from preprocess.phantom.settings import PhantomSettings
from preprocess.totalseg_labels import label_ids, label_map
from tests.preprocess.phantom.conftest import TINY


def _array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def _nodes(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_manifest_is_valid_and_labels_follow_the_paper_rule_set(tiny_cohort: Path):
    manifest = read_manifest(tiny_cohort / "manifest.csv", tiny_cohort, rule_set="paper")
    assert manifest.issues == ()
    assert [r.scan_id for r in manifest.rows] == [f"demo-00{i}-s0" for i in range(1, 5)]
    listed = _chosen(TINY["patients"], TINY["station_list_fraction"], TINY["seed"], 1)
    assert len(listed) == 3
    stages = set()
    for i, row in enumerate(manifest.rows):
        truth = _nodes(tiny_cohort / "truth" / row.scan_id / "nodes.csv")
        malignant = {n["station"] for n in truth if n["malignant"] == "1"}
        assert n_stage(malignant, row.tumor_side, "paper") == row.n_clinical == row.n_pathological
        assert set(row.stations_clinical) == (malignant if i in listed else set())
        stages.add(row.n_clinical)
    assert len(stages) >= 2


def test_pet_is_dicom_for_the_requested_fraction(tiny_cohort: Path):
    manifest = read_manifest(tiny_cohort / "manifest.csv", tiny_cohort)
    dicom = [r for r in manifest.rows if r.pet.is_dir()]
    assert len(dicom) == 2
    assert all(len(list(r.pet.glob("*.dcm"))) > 10 for r in dicom)
    nifti = [r for r in manifest.rows if r.pet.is_file()]
    assert all(sitk.ReadImage(str(r.pet)).GetPixelID() == sitk.sitkFloat32 for r in nifti)


def test_every_truth_node_lies_in_its_station(tiny_cohort: Path):
    for scan in sorted((tiny_cohort / "truth").iterdir()):
        image = sitk.ReadImage(str(scan / "stations.nii.gz"))
        labels = sitk.GetArrayFromImage(image)
        nodes = _nodes(scan / "nodes.csv")
        assert nodes, scan
        for node in nodes:
            index = image.TransformPhysicalPointToIndex([float(node[k]) for k in ("x_mm", "y_mm", "z_mm")])
            assert labels[index[::-1]] == station(node["station"]).code, (scan.name, node)


def test_no_node_lies_near_the_cranial_or_caudal_face_of_the_field_of_view(tiny_cohort: Path):
    """Station 1 reaches the top of the field; its nodes stay 10 mm inside, where atlas labels still reach."""
    station_one = 0
    for scan in sorted((tiny_cohort / "truth").iterdir()):
        image = sitk.ReadImage(str(scan / "stations.nii.gz"))
        bottom = image.GetOrigin()[2]
        top = image.TransformIndexToPhysicalPoint((0, 0, image.GetSize()[2] - 1))[2]
        for node in _nodes(scan / "nodes.csv"):
            assert bottom + FIELD_EDGE_MARGIN_MM <= float(node["z_mm"]) <= top - FIELD_EDGE_MARGIN_MM, (scan.name, node)
            station_one += node["station"] in ("1R", "1L")
    assert station_one > 0


def test_stations_lie_inside_the_body_and_outside_every_organ(tiny_cohort: Path):
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    for scan in sorted((tiny_cohort / "scans").iterdir()):
        stations = _array(tiny_cohort / "truth" / scan.name / "stations.nii.gz")
        body = ndimage.binary_fill_holes(_array(scan / "ct.nii.gz") > -500, structure=in_plane)
        totalseg = _array(scan / "totalseg.nii.gz")
        assert set(np.unique(stations)) == set(range(18)), scan.name  # all 17 stations in the field of view
        assert body[stations > 0].all(), scan.name
        assert not (totalseg[stations > 0] > 0).any(), scan.name


def test_totalseg_uses_v2_ids(tiny_cohort: Path):
    ids = label_ids("v2")
    totalseg = _array(tiny_cohort / "scans" / "demo-001-s0" / "totalseg.nii.gz")
    present = set(np.unique(totalseg)) - {0}
    for name in ("trachea", "aorta", "heart", "esophagus", "lung_upper_lobe_left", "vertebrae_T5", "sternum",
                 "superior_vena_cava", "rib_right_4", "pulmonary_vein"):
        assert ids[name] in present, name
    assert present <= set(ids.values())
    assert read_label_extension(tiny_cohort / "scans" / "demo-001-s0" / "totalseg.nii.gz") == label_map("v2")


def test_atlases_differ_from_each_other_and_carry_their_own_delineation(tiny_cohort: Path):
    atlases = sorted((tiny_cohort / "atlases").iterdir())
    assert [a.name for a in atlases] == [f"atlas-0{i}" for i in range(1, 6)]
    cts = [_array(a / "ct.nii.gz") for a in atlases]
    stations = [_array(a / "stations.nii.gz") for a in atlases]
    for i in range(5):
        assert (atlases[i] / "atlas.toml").read_text().count("station codes 1-17") == 1
        assert set(np.unique(stations[i])) <= set(range(18))
        for j in range(i + 1, 5):
            assert not np.array_equal(cts[i], cts[j])
            assert (stations[i] != stations[j]).mean() > 0.001


def _cohort_arrays(root: Path) -> dict[str, bytes]:
    """Every voxel array and table of a cohort, keyed by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.name.endswith(".nii.gz"):
            out[key] = _array(path).tobytes()
        elif path.suffix in (".csv", ".toml") and path.name != "phantom.toml":
            out[key] = path.read_bytes()
        elif path.suffix == ".dcm":
            out[key] = sitk.GetArrayFromImage(sitk.ReadImage(str(path))).tobytes()
    return out


def test_same_seed_gives_identical_output_other_seed_other_anatomy(tmp_path: Path):
    argv = ["--patients", "2", "--atlases", "1", "--spacing-mm", "4", "--pet-spacing-mm", "4",
            "--dicom-pet-fraction", "0.5"]
    assert main(["--out", str(tmp_path / "a"), "--seed", "5", *argv]) == 0
    assert main(["--out", str(tmp_path / "b"), "--seed", "5", *argv]) == 0
    assert main(["--out", str(tmp_path / "c"), "--seed", "6", *argv]) == 0
    a, b, c = (_cohort_arrays(tmp_path / name) for name in "abc")
    assert a.keys() == b.keys() and len(a) > 10
    assert all(a[key] == b[key] for key in a)
    totalseg = "scans/demo-001-s0/totalseg.nii.gz"
    assert a[totalseg] != c[totalseg]
    assert a["atlases/atlas-01/ct.nii.gz"] != c["atlases/atlas-01/ct.nii.gz"]


def test_refuses_a_folder_that_is_not_a_phantom_cohort(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a phantom cohort folder .it holds notes.txt"):
        generate_cohort(PhantomSettings(out=str(tmp_path), patients=1, atlases=0, spacing_mm=4.0))
    assert cli(["--out", str(tmp_path), "--patients", "1"]) == 1


@pytest.mark.parametrize("field, value, message", [
    ("dicom_pet_fraction", 1.5, "dicom_pet_fraction must be in"),
    ("station_list_fraction", -0.1, "station_list_fraction must be in"),
    ("patients", 0, "patients must be >= 1"),
    ("spacing_mm", 10.0, "spacing_mm must be between"),
    ("extent_mm", (100.0, 100.0), "extent_mm must hold 3 values"),
])
def test_settings_refuse_bad_values(field: str, value, message: str):
    with pytest.raises(ValueError, match=message):
        PhantomSettings(**{field: value})


def test_a_finished_cohort_is_recognised(tiny_cohort: Path, tmp_path: Path):
    assert cohort_is_complete(tiny_cohort)
    assert not cohort_is_complete(tmp_path)


def test_an_unfinished_cohort_is_redone_and_the_cache_folder_kept(tmp_path: Path):
    (tmp_path / "scans" / "demo-009-s0").mkdir(parents=True)  # left by a killed run: no phantom.toml
    (tmp_path / "cache" / "demo").mkdir(parents=True)
    generate_cohort(PhantomSettings(out=str(tmp_path), patients=1, atlases=0, spacing_mm=4.0))
    assert cohort_is_complete(tmp_path)
    assert sorted(p.name for p in (tmp_path / "scans").iterdir()) == ["demo-001-s0"]
    assert (tmp_path / "cache" / "demo").is_dir()


def test_marker_records_the_settings_as_toml(tiny_cohort: Path):
    written = from_toml(PhantomSettings, tiny_cohort / "phantom.toml")
    assert written == PhantomSettings(out=str(tiny_cohort), **TINY)


def test_a_cohort_drawn_with_other_settings_is_not_the_one_asked_for(tiny_cohort: Path):
    asked = PhantomSettings(out=str(tiny_cohort), **TINY)
    assert cohort_is_complete(tiny_cohort, asked)
    assert cohort_is_complete(tiny_cohort, dataclasses.replace(asked, out="elsewhere", preview=not asked.preview))
    assert not cohort_is_complete(tiny_cohort, dataclasses.replace(asked, patients=asked.patients + 1))
    assert not cohort_is_complete(tiny_cohort, dataclasses.replace(asked, seed=asked.seed + 1))


def test_a_cohort_drawn_by_an_older_phantom_is_not_the_one_asked_for(tiny_cohort: Path, tmp_path: Path):
    """A marker without the uptake settings (written before they existed) must not pass for a current cohort."""
    old = tmp_path / "old"
    old.mkdir()
    (old / "manifest.csv").write_text((tiny_cohort / "manifest.csv").read_text())
    lines = (tiny_cohort / "phantom.toml").read_text().splitlines()
    (old / "phantom.toml").write_text("\n".join(x for x in lines if not x.startswith("mild_hot_suv")) + "\n")
    asked = PhantomSettings(out=str(old), **TINY)
    assert cohort_is_complete(old) and not cohort_is_complete(old, asked)


def test_the_demo_config_phantom_table_is_valid_phantom_settings():
    table = values_from_mapping(PhantomSettings, stage_overrides("demo", "phantom"), "demo [phantom]")
    assert PhantomSettings(**table).patients >= 30
