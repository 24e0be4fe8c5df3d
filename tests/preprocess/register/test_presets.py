"""The registration presets: every file in configs/registration/ is a preset the command line offers, and back."""

from typing import get_args

from cache.build_settings import RegistrationPreset
from preprocess.register.settings import preset_names, registration_settings


def test_the_command_line_offers_exactly_the_preset_files():
    assert set(get_args(RegistrationPreset)) == set(preset_names())


def test_both_presets_hold_the_same_three_groups_out_for_the_check():
    full, demo = registration_settings("full"), registration_settings("demo")
    assert set(demo.qa_held_out_channels) == set(full.qa_held_out_channels) == {
        "esophagus", "pulmonary_vein", "great_veins"}
    assert demo.deformable_channels == full.deformable_channels


def test_demo_stops_at_4_mm_with_the_settings_and_limits_the_tuning_command_chose():
    demo = registration_settings("demo")
    assert demo.deformable_levels_mm[-1] == 4.0
    assert demo.qa_held_out_dice_min > 0.5 and demo.qa_jacobian_min < 1.0 < demo.qa_jacobian_max < float("inf")


def test_full_has_the_tuned_settings_that_do_not_fold_at_1_mm_and_flags_only_folding_until_a_bank_sets_limits():
    full = registration_settings("full")
    assert (full.diffusive_alpha_vox2, full.deformable_iterations) == (1.0, (40, 25, 15))
    assert (full.qa_held_out_dice_min, full.qa_jacobian_min, full.qa_jacobian_max) == (0.0, 0.0, float("inf"))
