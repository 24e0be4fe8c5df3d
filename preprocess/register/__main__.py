"""`python -m preprocess.register --atlas-bank DIR --ct CT --totalseg MASKS --out STATIONS.nii.gz [--qa QA.png]`."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cache.settings import SettingsError, format_settings, settings_from_namespace, settings_parents
from preprocess.register.command import RegisterCommand, register_files
from preprocess.register.settings import RegistrationSettings, registration_settings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess.register",
        description="Register every atlas of a bank to one CT and write the fused lymph node stations.",
        parents=settings_parents(RegisterCommand, RegistrationSettings),
    )
    namespace = parser.parse_args(argv)
    try:
        command = settings_from_namespace(namespace, RegisterCommand)
        preset = registration_settings(command.preset)
        settings = settings_from_namespace(namespace, RegistrationSettings, preset.__dict__, f"preset {command.preset}")
        print(format_settings(command, settings))
        station_map = register_files(command, settings)
    except (SettingsError, ValueError, RuntimeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {command.out}; timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in station_map.timings_s.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
