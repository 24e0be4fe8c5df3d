"""Settings files: unknown keys and bad values are named; the hash changes with any setting (flags: test_cli.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from cache.settings import SettingsError, from_toml, settings_hash


@dataclass(frozen=True)
class Example:
    patch_size_vox: int = field(default=64, metadata={"help": "edge of the patch"})
    learning_rate: float = 5e-4
    device: Literal["auto", "cpu", "cuda"] = "auto"
    weight_kg: float | None = None
    amp: bool = False


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


def test_hash_changes_with_any_setting():
    assert settings_hash(Example()) == settings_hash(Example())
    assert settings_hash(Example()) != settings_hash(Example(learning_rate=1e-3))
