"""`python -m preprocess.register.tune` on a tiny phantom bank: every candidate scored, the chosen preset loads."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from cache.settings import from_toml
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from preprocess.register import RegistrationSettings, registration_settings
from preprocess.register.tune import Candidate, TuneSettings, candidates, choose, main

FAST = ["--preset", "demo", "--spacing-mm", "6", "--crop-margin-mm", "12", "--device", "cpu",
        "--linear-iterations", "10", "--deformable-levels-mm", "12", "6", "--deformable-iterations", "8", "5"]


def test_the_grid_scales_iterations_and_crosses_every_choice():
    base = registration_settings("demo")
    grid = candidates(base, TuneSettings(try_diffusive_alpha_vox2=(0.5, 1.0), try_iteration_scale=(0.5,),
                                         try_ct_channel="both"))
    assert len(grid) == 4 and {c["use_ct_channel"] for c in grid} == {False, True}
    assert all(c["deformable_iterations"] == tuple(round(n / 2) for n in base.deformable_iterations) for c in grid)


def test_the_fastest_of_the_nearly_best_is_chosen():
    base = RegistrationSettings()

    def candidate(dice: float, seconds: float) -> Candidate:
        return Candidate(base, {}, dice, 0.0, 0.0, seconds)

    slow_best, fast_close, fast_poor = candidate(0.900, 90.0), candidate(0.899, 30.0), candidate(0.85, 10.0)
    assert choose([slow_best, fast_close, fast_poor], 0.002) is fast_close
    assert choose([slow_best, fast_close, fast_poor], 0.0) is slow_best


def test_on_the_cpu_the_least_cpu_time_wins_not_the_least_wall_time():
    base = RegistrationSettings()
    # a candidate that ran while the machine was busy: more wall seconds for less work
    busy_cheap = Candidate(base, {"n": 1}, 0.900, 0.0, 0.0, seconds=300.0, cpu_seconds=100.0)
    quiet_costly = Candidate(base, {"n": 2}, 0.900, 0.0, 0.0, seconds=150.0, cpu_seconds=140.0)
    assert choose([busy_cheap, quiet_costly], 0.002, "cpu_seconds") is busy_cheap
    assert choose([busy_cheap, quiet_costly], 0.002) is quiet_costly


def test_a_field_that_folds_is_not_chosen_however_well_it_scores():
    base = RegistrationSettings()
    folding_best = Candidate(base, {"n": 1}, 0.856, 0.0, 0.0, 70.0, jacobian_min=-0.14)
    smooth = Candidate(base, {"n": 2}, 0.854, 0.0, 0.0, 90.0, jacobian_min=-0.02)
    smoother = Candidate(base, {"n": 3}, 0.850, 0.0, 0.0, 60.0, jacobian_min=0.10)
    assert choose([folding_best, smooth, smoother], 0.002) is folding_best  # no limit: the old choice
    assert choose([folding_best, smooth, smoother], 0.002, fold_limit=-0.05) is smooth
    assert choose([folding_best, smooth], 0.002, fold_limit=0.0) is smooth  # all fold: the least folding one


@pytest.fixture(scope="module")
def phantom_bank(tmp_path_factory) -> Path:
    root = generate_cohort(PhantomSettings(out=str(tmp_path_factory.mktemp("tune") / "demo"), patients=1, atlases=3,
                                           seed=3, spacing_mm=6.0, pet_spacing_mm=6.0))
    return root / "atlases"


def test_tune_scores_each_candidate_and_writes_a_preset_that_loads(phantom_bank, tmp_path):
    preset = tmp_path / "presets" / "chosen.toml"
    assert main(["--atlas-bank", str(phantom_bank), "--out", str(tmp_path / "out"), *FAST,
                 "--try-diffusive-alpha-vox2", "0.5", "4.0", "--try-iteration-scale", "1", "--try-ct-channel", "off",
                 "--write-preset", str(preset)]) == 0
    with open(tmp_path / "out" / "tune_scores.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["diffusive_alpha_vox2"] for r in rows] == ["0.5", "4.0"] and {r["force"] for r in rows} == {"demons"}
    assert all(0.5 < float(r["dice_fused"]) <= 1 and float(r["seconds"]) > 0 and float(r["cpu_seconds"]) > 0
               and float(r["jacobian_min"]) < 1 for r in rows)
    best = max(rows, key=lambda r: float(r["dice_fused"]))
    text = preset.read_text()
    assert text.count("<- chosen") == 1
    assert "dice fused | single | linear | seconds | cpu seconds | jacobian min" in text
    chosen = from_toml(RegistrationSettings, preset)
    assert chosen.diffusive_alpha_vox2 in (0.5, 4.0) and chosen.deformable_iterations == (8, 5)
    assert 0 < chosen.qa_held_out_dice_min < 1 and chosen.qa_jacobian_max < float("inf")
    if float(best["dice_fused"]) - min(float(r["dice_fused"]) for r in rows) > 0.002:
        assert chosen.diffusive_alpha_vox2 == float(best["diffusive_alpha_vox2"])
    assert (tmp_path / "out" / "tune.log").is_file()
