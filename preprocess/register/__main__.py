"""`python -m preprocess.register --atlas-bank DIR --ct CT --totalseg MASKS --out STATIONS.nii.gz [--qa QA.png]`.

Registration settings: defaults < `configs/registration/<--preset>.toml` < `--config FILE` < flags. The run logs
to `<out name>.register.log` beside the output.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cache.cli import Command, Preset
from cache.settings import read_toml
from preprocess.register.command import RegisterCommand, register_files
from preprocess.register.settings import PRESET_DIR, RegistrationSettings, registration_settings


def registration_presets(given: Mapping[str, Any]) -> list[Preset]:
    """The chosen registration preset file, checked by loading it whole."""
    preset = given.get("preset", RegisterCommand.preset)
    registration_settings(preset)  # an unknown preset name is refused here, naming the ones there are
    path = PRESET_DIR / f"{preset}.toml"
    return [Preset(f"configs/registration/{preset}.toml", RegistrationSettings, read_toml(path))]


def register(command: RegisterCommand, settings: RegistrationSettings) -> int:
    station_map = register_files(command, settings)
    print(f"wrote {command.out}; timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in station_map.timings_s.items()))
    return 0


def log_file(command: RegisterCommand, settings: RegistrationSettings) -> Path:
    out = Path(command.out)
    return out.parent / f"{out.name.split('.')[0]}.register.log"


COMMAND = Command("python -m preprocess.register",
                  "Register every atlas of a bank to one CT and write the fused lymph node stations.",
                  (RegisterCommand, RegistrationSettings), register, presets=registration_presets,
                  required=("atlas_bank", "ct", "totalseg", "out"), log_file=log_file)


main = COMMAND.run  # Register and write the stations; failures raise
cli = COMMAND.cli  # for python -m and the console script: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
