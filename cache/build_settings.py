"""The preprocessing settings that decide what a cache file holds, so every stage can tell a stale cache.

`python -m preprocess` takes these as flags (`--spacing-mm`) beside its run settings; a dataset config's
`[preprocess]` table sets them per dataset. The trainer and `python -m cache verify` compute the current values
here, without importing `preprocess`, and the reader refuses files built with others, naming the setting.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from cache.dataset import read_study_file, stage_overrides, study_file
from cache.settings import SettingsError, settings_dict, values_from_mapping

# The registration presets of configs/registration/ (a test checks that this list names exactly those files).
RegistrationPreset = Literal["full", "demo"]


@dataclass(frozen=True)
class BuildSettings:
    """Settings that change the content of a cache file (a file built with other values is stale)."""

    spacing_mm: float = field(default=1.0, metadata={"help": "isotropic voxel size of the cache, in mm"})
    crop_margin_mm: float = field(default=20.0, metadata={"help": "margin around the lungs+trachea box, mm"})
    registration_preset: RegistrationPreset = field(
        default="full", metadata={"help": "registration settings: full (finest level = data) or demo (coarsest "
                                          "4 mm, as the tuning command chose it on the demo bank)"}
    )


def build_settings_for(dataset: str) -> BuildSettings:
    """Current build settings of a dataset: defaults, then its config's `[preprocess]` values for these fields.

    A study's members must share them (one patch geometry for the pool); a study whose members differ is refused.
    """
    path = study_file(dataset)
    if path is not None:
        members = read_study_file(path)["members"]
        settings = {m: build_settings_for(m) for m in members}
        if len(set(settings.values())) > 1:
            raise SettingsError(f"study {path}: its members' caches are built with different settings "
                                f"({settings}); pooled patches need one geometry: align the members' [preprocess] "
                                "tables")
        return settings[members[0]]
    table = stage_overrides(dataset, "preprocess")
    names = {f.name for f in dataclasses.fields(BuildSettings)}
    values = {k: v for k, v in table.items() if k in names}
    return BuildSettings(**values_from_mapping(BuildSettings, values, f"[preprocess] of dataset {dataset!r}"))


def expected_settings(*settings: Any) -> dict[str, dict[str, Any]]:
    """The settings dict a cache file stores (`{class name: {field: value}}`), for comparison by the reader."""
    return settings_dict(*settings)


def settings_differences(stored: Mapping[str, Mapping], expected: Mapping[str, Mapping]) -> list[str]:
    """One line per expected setting whose stored value differs, e.g. `BuildSettings.spacing_mm: file 2.0,
    current 1.0`. Settings the file has and `expected` does not mention are not compared."""
    lines = []
    for group, values in expected.items():
        stored_values = stored.get(group, {})
        for name, value in values.items():
            if name not in stored_values:
                lines.append(f"{group}.{name}: file lacks it, current {value!r}")
            elif stored_values[name] != value:
                lines.append(f"{group}.{name}: file {stored_values[name]!r}, current {value!r}")
    return lines
