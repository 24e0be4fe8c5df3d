"""Leave-one-atlas-out on a tiny phantom bank (3 atlases at 6 mm): tables, fusion's value, a broken atlas."""

from __future__ import annotations

import csv
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cache.settings import read_toml
from cache.stations import station_names
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from preprocess.register import registration_settings
from preprocess.register.validate import (
    chance_z,
    cli,
    limit_values,
    main,
    mean_surface_distance,
    station_dice,
)

FAST = ["--preset", "demo", "--spacing-mm", "6", "--crop-margin-mm", "12", "--device", "cpu",
        "--linear-iterations", "20", "--deformable-levels-mm", "12", "6", "--deformable-iterations", "15", "10"]


@pytest.fixture(scope="module")
def phantom_bank(tmp_path_factory) -> Path:
    root = generate_cohort(PhantomSettings(out=str(tmp_path_factory.mktemp("loao") / "demo"), patients=1, atlases=3,
                                           seed=3, spacing_mm=6.0, pet_spacing_mm=6.0))
    return root / "atlases"


@pytest.fixture(scope="module")
def clean_run(phantom_bank, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("clean")
    assert main(["--atlas-bank", str(phantom_bank), "--out", str(out), *FAST]) == 0
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_table_has_every_station_and_fusion_beats_a_single_atlas(clean_run):
    rows = {r["station"]: r for r in _rows(clean_run / "loao_stations.csv")}
    assert list(rows) == [*station_names(), "mean"]
    assert all(r["held_out_with_station"] == "3" for name, r in rows.items() if name != "mean")
    mean = {k: float(v) for k, v in rows["mean"].items() if k.startswith(("dice", "msd"))}
    assert mean["dice_fused"] >= mean["dice_single"] > mean["dice_single_linear"]
    assert mean["dice_fused"] > mean["dice_fused_linear"] and mean["dice_fused"] > 0.8
    assert mean["msd_fused_mm"] < mean["msd_fused_linear_mm"]
    scores = _rows(clean_run / "loao_scores.csv")
    assert len(scores) == 3 * (2 + 2 * 2) * 17  # held out x (two fused + two single per other atlas) x stations
    assert "| mean |" in (clean_run / "loao.md").read_text()
    assert "fused" in (clean_run / "validate.log").read_text()


def test_structures_are_scored_apart_and_the_limits_feed_a_preset(clean_run):
    structures = _rows(clean_run / "loao_structures.csv")
    held_out = {r["group"] for r in structures if r["role"] == "held out"}
    assert held_out == set(registration_settings("demo").qa_held_out_channels)
    assert all(r["registrations"] == "6" for r in structures if r["group"] in ("trachea", "heart", "esophagus"))
    assert "The paper's structure check, reduced to trachea, esophagus, heart" in (clean_run / "loao.md").read_text()
    limits = read_toml(clean_run / "qa_limits.toml")
    assert set(limits) == {"qa_held_out_dice_min", "qa_jacobian_min", "qa_jacobian_max"}
    means = [float(r["dice_mean"]) for r in structures if r["role"] == "held out"]
    assert 0.3 < limits["qa_held_out_dice_min"] <= max(means)  # the worst registration's mean over held-out groups
    settings = replace(registration_settings("demo"), **limits)  # the keys are preset keys
    assert settings.qa_jacobian_min < 1 < settings.qa_jacobian_max
    assert "crosses each limit by chance in 1 scan of 20" in (clean_run / "qa_limits.toml").read_text()


def test_a_scan_as_good_as_the_atlases_crosses_a_limit_by_chance_in_one_scan_of_twenty():
    worst_of_five = np.random.default_rng(0).normal(0.85, 0.01, (100_000, 5)).min(axis=1)
    assert abs(float(np.mean(worst_of_five < 0.85 - chance_z(5) * 0.01)) - 0.05) < 0.003
    # the extreme of 20 registrations would flag 5 in 25 such scans; the demo bank's check limits (demo.toml)
    observed = {"held_out_dice": 0.854, "held_out_dice_sd": 0.013, "jacobian_min_mean": 0.209,
                "jacobian_min_sd": 0.147, "jacobian_max_mean": 1.725, "jacobian_max_sd": 0.340}
    assert limit_values(observed, 5) == {"qa_held_out_dice_min": 0.823, "qa_jacobian_min": -0.14,
                                         "qa_jacobian_max": 2.52}
    assert limit_values({**observed, "held_out_dice": float("nan")}, 5)["qa_held_out_dice_min"] == 0.0


def test_a_broken_atlas_lowers_its_row(phantom_bank, clean_run, tmp_path):
    bank = tmp_path / "bank"
    shutil.copytree(phantom_bank, bank)
    path = bank / "atlas-02" / "stations.nii.gz"
    image = sitk.ReadImage(str(path))
    shifted = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), 4, axis=2))  # 24 mm to the side
    shifted.CopyInformation(image)
    sitk.WriteImage(shifted, str(path))
    assert main(["--atlas-bank", str(bank), "--out", str(tmp_path / "out"), *FAST]) == 0

    def fused_dice(run: Path) -> dict[str, float]:
        rows = [r for r in _rows(run / "loao_scores.csv") if r["method"] == "fused"]
        return {held: float(np.mean([float(r["dice"]) for r in rows if r["held_out"] == held]))
                for held in ("atlas-01", "atlas-02", "atlas-03")}

    broken, clean = fused_dice(tmp_path / "out"), fused_dice(clean_run)
    assert broken["atlas-02"] < clean["atlas-02"] - 0.3
    assert broken["atlas-02"] < min(broken["atlas-01"], broken["atlas-03"]) - 0.2
    singles = [r for r in _rows(tmp_path / "out" / "loao_scores.csv") if r["method"] == "single"]
    from_broken = np.mean([float(r["dice"]) for r in singles if r["atlas"] == "atlas-02"])
    from_others = np.mean([float(r["dice"]) for r in singles if r["atlas"] != "atlas-02"
                           and r["held_out"] != "atlas-02"])
    assert from_broken < from_others - 0.3


def test_surface_distance_of_concentric_spheres_is_their_radius_difference():
    zz, yy, xx = np.indices((40, 40, 40)) - 19.5
    radius = np.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    small, large = radius <= 10, radius <= 13
    assert mean_surface_distance(small, small, (1.0, 1.0, 1.0)) == 0.0
    assert mean_surface_distance(small, large, (1.0, 1.0, 1.0)) == pytest.approx(3.0, abs=0.4)
    assert mean_surface_distance(small, large, (2.0, 2.0, 2.0)) == pytest.approx(6.0, abs=0.8)
    assert np.isnan(mean_surface_distance(small, np.zeros_like(small), (1.0, 1.0, 1.0)))


def test_station_dice_counts_overlap_and_leaves_absent_codes_nan():
    truth = np.array([0, 1, 1, 1, 2, 2, 0, 0], dtype=np.uint8)
    labels = np.array([0, 1, 1, 0, 2, 0, 2, 3], dtype=np.uint8)
    dice = station_dice(truth, labels, 4)
    assert dice[:3] == pytest.approx([4 / 5, 2 / 4, 0.0]) and np.isnan(dice[3])


def test_a_bank_of_two_atlases_is_refused(phantom_bank, tmp_path, capsys):
    bank = tmp_path / "bank"
    for name in ("atlas-01", "atlas-02"):
        shutil.copytree(phantom_bank / name, bank / name)
    assert cli(["--atlas-bank", str(bank), "--out", str(tmp_path / "out"), *FAST]) == 1
    assert "needs at least 3" in capsys.readouterr().err
    assert cli(["--atlas-bank", str(bank)]) == 2
