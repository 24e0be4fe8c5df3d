"""Settings: defaults < TOML preset < flags, one name in both; unknown keys and bad values are named."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from cache.settings import SettingsError, from_toml, parse_settings, settings_hash


@dataclass(frozen=True)
class Example:
    patch_size_vox: int = field(default=64, metadata={"help": "edge of the patch"})
    learning_rate: float = 5e-4
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weight_kg: float | None = None
    amp: bool = False


def test_precedence_default_preset_flag():
    assert parse_settings(Example, []) == Example()
    preset = {"patch_size_vox": 32, "learning_rate": 1}
    settings = parse_settings(Example, ["--learning-rate", "0.1", "--device", "cpu", "--amp"], preset)
    assert settings == Example(patch_size_vox=32, learning_rate=0.1, device="cpu", amp=True)
    assert parse_settings(Example, ["--weight-kg", "70.5"]).weight_kg == 70.5


def test_toml_file_and_unknown_key(tmp_path):
    path = tmp_path / "preset.toml"
    path.write_text("patch_size_vox = 32\nlerning_rate = 0.1\n")
    with pytest.raises(SettingsError, match="unknown setting.*lerning_rate"):
        from_toml(Example, path)
    path.write_text('patch_size_vox = 32\ndevice = "tpu"\n')
    with pytest.raises(SettingsError, match="'device'.*'tpu'"):
        from_toml(Example, path)
    path.write_text("patch_size_vox = 32\n")
    assert from_toml(Example, path).patch_size_vox == 32


def test_bad_flag_choice_exits():
    with pytest.raises(SystemExit):
        parse_settings(Example, ["--device", "tpu"])


def test_hash_changes_with_any_setting():
    assert settings_hash(Example()) == settings_hash(Example())
    assert settings_hash(Example()) != settings_hash(Example(learning_rate=1e-3))
