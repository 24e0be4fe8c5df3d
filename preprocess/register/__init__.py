"""Multi-atlas registration and station label fusion, PyTorch on CUDA when present, else CPU.

How it works: docs/architecture.md#registration.

Public API: `map_stations(ct_hu, structures, grid, bank, settings, device) -> StationMap` and
`load_atlas_bank(path, spacing_mm, crop_margin_mm) -> AtlasBank`; settings presets via `registration_settings`.
"""

from preprocess.register.atlas_bank import Atlas, AtlasBank, AtlasBankError, load_atlas_bank
from preprocess.register.fusion import StationMap
from preprocess.register.linear import RegistrationError
from preprocess.register.mapping import map_stations
from preprocess.register.settings import RegistrationSettings, registration_settings

__all__ = [
    "Atlas", "AtlasBank", "AtlasBankError", "RegistrationError", "RegistrationSettings", "StationMap",
    "load_atlas_bank", "map_stations", "registration_settings",
]
