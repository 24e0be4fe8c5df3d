"""The registration presets: every file in configs/registration/ is a preset the command line offers, and back."""

from typing import get_args

from cache.build_settings import RegistrationPreset
from preprocess.register.settings import preset_names, registration_settings


def test_the_command_line_offers_exactly_the_preset_files():
    assert set(get_args(RegistrationPreset)) == set(preset_names())


def test_demo_maps_as_before_and_demo_check_only_moves_three_groups_to_the_check():
    demo, check = registration_settings("demo"), registration_settings("demo-check")
    assert demo.qa_held_out_channels == ()
    assert set(check.qa_held_out_channels) == {"esophagus", "pulmonary_vein", "great_veins"}
    assert set(demo.deformable_channels) - set(check.deformable_channels) == set(check.qa_held_out_channels)
    assert demo.deformable_levels_mm == check.deformable_levels_mm
    assert demo.deformable_iterations == check.deformable_iterations


def test_demo_tuned_maps_as_demo_but_with_the_settings_the_tuning_command_chose():
    demo, tuned = registration_settings("demo"), registration_settings("demo-tuned")
    assert tuned.diffusive_alpha_vox2 == demo.diffusive_alpha_vox2 and tuned.deformable_iterations == (30, 20, 15)
    assert (tuned.deformable_channels, tuned.deformable_levels_mm) == (demo.deformable_channels,
                                                                      demo.deformable_levels_mm)
    assert tuned.qa_jacobian_min < 0 < tuned.qa_jacobian_max < float("inf")  # its own limits, written by tune
