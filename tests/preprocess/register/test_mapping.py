from dataclasses import replace

import numpy as np
import pytest
import SimpleITK as sitk

from cache.devices import DeviceError
from cache.grid import Grid
from preprocess.register import RegistrationError, load_atlas_bank, map_stations, registration_settings
from preprocess.register.__main__ import cli, main
from preprocess.register.atlas_bank import read_cropped_scan
from preprocess.register.memory import MemoryBudgetError

from .conftest import toy_scan, write_image

FAST = dict(linear_levels_mm=(8.0,), linear_iterations=(20,), deformable_levels_mm=(8.0, 0.0),
            deformable_iterations=(20, 15))


@pytest.fixture(scope="module")
def scan_and_bank(toy_bank, tmp_path_factory):
    folder = tmp_path_factory.mktemp("scan")
    scan = toy_scan(shift_mm=(2.0, 2.0, -2.0), scale=1.02)
    write_image(scan.ct_hu, scan.grid, folder / "ct.nii.gz")
    write_image(scan.structures, scan.grid, folder / "totalseg.nii.gz")
    write_image(scan.stations, scan.grid, folder / "truth.nii.gz")
    return folder, load_atlas_bank(toy_bank, 4.0, 8.0)


def test_toy_stations_are_mapped_and_registration_improves_dice(scan_and_bank):
    folder, bank = scan_and_bank
    scan = read_cropped_scan(folder / "ct.nii.gz", folder / "totalseg.nii.gz", 4.0, 8.0, "v2")
    truth = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "truth.nii.gz")))
    settings = replace(registration_settings("full"), **FAST)
    station_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, "cpu")
    assert station_map.labels.shape == scan.grid.shape_zyx and station_map.labels.dtype == np.uint8
    assert station_map.votes.shape == (17, *scan.grid.shape_zyx) and station_map.n_atlases == 3
    # centres of the true stations (on the scan's own uncropped grid) land in the right fused station
    for code in (7, 8, 11):
        centre = np.argwhere(truth == code).mean(0)
        physical = Grid(truth.shape, (4.0,) * 3, (0.0, 0.0, 0.0)).index_to_physical(centre)
        z, y, x = np.rint(scan.grid.physical_to_index(physical)).astype(int)
        assert station_map.labels[z, y, x] == code
    stages = {r["stage"]: [] for r in station_map.qa}
    for record in station_map.qa:
        stages[record["stage"]].append(record["dice_mean"])
        assert record["folding_fraction"] < 0.01
    assert set(stages) == {"initial", "linear", "deformable"} and len(station_map.qa) == 9
    assert np.mean(stages["deformable"]) > np.mean(stages["initial"]) and np.mean(stages["deformable"]) > 0.85
    assert set(station_map.timings_s) >= {"initial", "linear", "deformable", "total"}


def test_wrong_inputs_are_refused(scan_and_bank):
    _, bank = scan_and_bank
    scan = toy_scan()
    settings = registration_settings("demo")
    anisotropic = Grid(scan.grid.shape_zyx, (4.0, 4.0, 5.0), (0.0, 0.0, 0.0))
    with pytest.raises(RegistrationError, match="isotropic"):
        map_stations(scan.ct_hu, scan.structures, anisotropic, bank, settings, "cpu")
    finer = Grid(scan.grid.shape_zyx, (2.0, 2.0, 2.0), (0.0, 0.0, 0.0))
    with pytest.raises(RegistrationError, match="loaded at 4.0 mm"):
        map_stations(scan.ct_hu, scan.structures, finer, bank, settings, "cpu")
    with pytest.raises(DeviceError, match="--device 'tpu'"):
        map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, "tpu")


def test_command_line_writes_stations_on_the_ct_grid(scan_and_bank, toy_bank, tmp_path):
    folder, _ = scan_and_bank
    out = tmp_path / "stations.nii.gz"
    argv = ["--atlas-bank", str(toy_bank), "--ct", str(folder / "ct.nii.gz"), "--totalseg",
            str(folder / "totalseg.nii.gz"), "--out", str(out), "--qa-png", str(tmp_path / "qa.png"),
            "--spacing-mm", "4", "--crop-margin-mm", "8", "--totalseg-version", "v2", "--preset", "demo",
            "--device", "cpu", "--deformable-iterations", "10", "10", "10"]
    assert main(argv) == 0
    written = sitk.ReadImage(str(out))
    ct = sitk.ReadImage(str(folder / "ct.nii.gz"))
    assert written.GetSize() == ct.GetSize()
    assert set(np.unique(sitk.GetArrayFromImage(written))) >= {0, 7, 8, 11}
    assert (tmp_path / "qa.png").stat().st_size > 1000
    assert cli(argv[:-4] + ["--ct", str(tmp_path / "missing.nii.gz")]) == 1
    assert (tmp_path / "stations.register.log").is_file()


def test_atlas_batches_of_one_two_and_all_give_the_same_fused_labels(scan_and_bank):
    folder, bank = scan_and_bank
    scan = read_cropped_scan(folder / "ct.nii.gz", folder / "totalseg.nii.gz", 4.0, 8.0, "v2")
    settings = replace(registration_settings("full"), **FAST)
    maps = {batch: map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, "cpu", atlas_batch=batch)
            for batch in (1, 2, 3)}
    assert [m.memory["atlas_batch"] for m in maps.values()] == [1, 2, 3]
    for batch in (1, 2):
        np.testing.assert_array_equal(maps[batch].labels, maps[3].labels)
        np.testing.assert_array_equal(maps[batch].votes, maps[3].votes)
        for a, b in zip(maps[batch].qa, maps[3].qa, strict=True):
            assert (a["atlas"], a["stage"]) == (b["atlas"], b["stage"]) and a["dice"] == b["dice"]
    assert set(np.unique(maps[3].labels)) == {0, 7, 8, 11}  # the three toy stations are there to compare


def test_a_scan_that_does_not_fit_its_memory_budget_is_refused_before_registering(scan_and_bank):
    folder, bank = scan_and_bank
    scan = read_cropped_scan(folder / "ct.nii.gz", folder / "totalseg.nii.gz", 4.0, 8.0, "v2")
    settings = replace(registration_settings("full"), **FAST)
    with pytest.raises(MemoryBudgetError, match=r"scan p7 \(crop .* voxels at 4 mm, 3 atlases\).* GiB with one "
                                                 r"atlas at a time, 0\.1 GiB available; .*--spacing-mm"):
        map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, "cpu", memory_budget_gb=0.1,
                     name="scan p7")
    with pytest.raises(RegistrationError, match="atlas_batch"):
        map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, "cpu", atlas_batch="0")
