"""The TCIA-like phantom's scanner: exact N mix, thin CT slices as real DICOM, extra PET noise."""

from __future__ import annotations

import csv
import datetime as dt
import re

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.images import read_image
from preprocess.phantom.dicom_ct import thin_slices, write_ct_series
from preprocess.phantom.settings import PhantomSettings
from preprocess.phantom.tcia import TciaTreeSettings, cli, draw_labels, draw_scan, stage_counts


def test_stage_counts_keep_the_mix_exactly_and_sum_to_the_cohort():
    assert stage_counts((64, 25, 4, 9), 102) == [64, 25, 4, 9]
    # 20 patients: 12.55, 4.90, 0.78, 1.76 -> floors 12, 4, 0, 1; the three largest remainders get one more
    assert stage_counts((64, 25, 4, 9), 20) == [12, 5, 1, 2]


def test_labels_drawn_for_an_n_stage_have_it():
    settings = PhantomSettings(seed=5)
    for n in range(4):
        labels = draw_labels(settings, 3, n)
        assert labels.n_stage == n
    assert draw_labels(settings, 3, None) == draw_labels(settings, 3, None)


def test_thin_slices_interpolate_along_z_only():
    grid = Grid((4, 2, 3), (2.0, 2.0, 3.0), (-10.0, 5.0, 20.0))
    hu = np.broadcast_to(np.array([0, 30, 60, 90], dtype=np.int16)[:, None, None], (4, 2, 3)).copy()
    thin, thin_grid = thin_slices(hu, grid, 1.0)
    assert thin_grid.shape_zyx == (10, 2, 3) and thin_grid.spacing_mm == (2.0, 2.0, 1.0)
    assert thin_grid.origin_mm == grid.origin_mm
    assert np.array_equal(thin[:, 0, 0], np.arange(10) * 10)


def test_ct_series_reads_back_as_written(tmp_path):
    grid = Grid((5, 6, 7), (1.5, 1.5, 1.0), (-4.5, -3.0, 12.0))
    hu = np.random.default_rng(0).integers(-1000, 1500, size=(5, 6, 7)).astype(np.int16)
    write_ct_series(tmp_path / "ct", hu, grid, "P1", dt.datetime(2024, 1, 8, 9, 30), "seed", "1.2.3", "1.2.4")
    image = read_image(tmp_path / "ct", modality="CT")
    assert np.array_equal(sitk.GetArrayFromImage(image), hu)
    assert np.allclose(image.GetSpacing(), grid.spacing_mm) and np.allclose(image.GetOrigin(), grid.origin_mm)


def test_extra_pet_noise_has_the_asked_spread():
    extra = 0.3
    phantom = PhantomSettings(seed=2, spacing_mm=6.0, pet_spacing_mm=6.0)
    labels = draw_labels(phantom, 0, 0)
    clean = draw_scan(phantom, TciaTreeSettings(), 0, labels).suv
    noisy = draw_scan(phantom, TciaTreeSettings(pet_extra_noise=extra), 0, labels).suv
    body = clean > 0.5  # away from the clip at 0
    spread = float(np.std((noisy - clean)[body] / np.sqrt(clean[body] + 0.05)))
    assert spread == pytest.approx(extra, rel=0.15)


def test_command_takes_its_settings_from_the_dataset_config(capsys):
    assert cli(["--dataset", "demo-dx", "--print-config"]) == 0
    printed = capsys.readouterr().out
    for line in ("patients = 102", "atlases = 0", "pet_spacing_mm = 6.0", "ct_slice_mm = 1.0",
                 "pet_extra_noise = 0.15", "n_stage_mix = [64.0, 25.0, 4.0, 9.0]"):
        assert line in printed
    assert re.search(r'^out = ".*data/demo-dx"$', printed, re.MULTILINE)


def test_command_writes_and_imports_a_small_download(tmp_path):
    out = tmp_path / "dx"
    argv = ["--out", str(out), "--patients", "2", "--spacing-mm", "6", "--pet-spacing-mm", "12", "--ct-slice-mm", "6"]
    assert cli(argv) == 0
    with open(out / "manifest.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert sorted(int(r["n_clinical"]) for r in rows) == [0, 1]  # demo-dx's mix over 2 patients: N0 1, N1 1
    assert all((out / r["totalseg"]).is_file() for r in rows)
    assert "manifest rows written: 2" in (out / "phantom-tcia.log").read_text(encoding="utf-8")


def test_command_refuses_a_folder_holding_other_files(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    assert cli(["--out", str(tmp_path), "--patients", "1", "--spacing-mm", "6"]) == 1
    assert "notes.txt" in capsys.readouterr().err and (tmp_path / "notes.txt").is_file()
