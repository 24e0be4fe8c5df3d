"""`python -m preprocess --dataset NAME`: raw PET/CT -> HDF5 cache; `--check` validates the manifest only.

NAME may be a study (configs/studies/): each member is preprocessed in turn, with its own `[preprocess]` table,
into its own cache folder.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cache.build_settings import BuildSettings
from cache.cli import Command, Preset, exit_status, split_table
from cache.dataset import DatasetConfig, load_dataset, read_study_file, stage_overrides, study_file
from cache.manifest import manifest_summary, read_manifest
from cache.settings import SettingsError, values_from_mapping
from preprocess.settings import PreprocessSettings, resolve_shard
from preprocess.suv import SuvSettings

SETTINGS_CLASSES = (PreprocessSettings, BuildSettings, SuvSettings)
DEMO_DATASET = "demo"


def preprocess_presets(given: Mapping[str, Any]) -> list[Preset]:
    """The dataset config's `[preprocess]` table, which may set fields of all three classes."""
    dataset = given.get("dataset", PreprocessSettings.dataset)
    return split_table(SETTINGS_CLASSES, stage_overrides(dataset, "preprocess"), f"dataset {dataset!r} [preprocess]")


def log_file(settings: PreprocessSettings, build: BuildSettings, suv: SuvSettings) -> Path | None:
    """`<cache folder>/preprocess.log` (one per shard); none for `--check`."""
    if settings.check:
        return None
    dataset = load_dataset(settings.dataset, root=settings.root or None, cache_root=settings.cache_root or None)
    shard = f"-shard{settings.shard.replace('/', 'of')}" if settings.shard else ""
    return dataset.cache_dir / f"preprocess{shard}.log"


def check_manifest(settings: PreprocessSettings) -> int:
    """Validate every row of the dataset's manifest and print a per-column summary; 1 if any row is bad."""
    dataset = load_dataset(settings.dataset, root=settings.root or None, cache_root=settings.cache_root or None)
    manifest = read_manifest(dataset.manifest_path, dataset.root, dataset.rule_set)
    print(manifest_summary(manifest, dataset.label_column))
    for issue in manifest.issues:
        print(f"error: {issue}", file=sys.stderr)
    return 1 if manifest.issues else 0


def ensure_demo_cohort(dataset: DatasetConfig, build: BuildSettings) -> None:
    """Generate the synthetic demo cohort at the dataset root when it is not there, was left unfinished, or was
    drawn with other settings than the dataset config's `[phantom]` table asks for."""
    from preprocess.phantom.cohort import MARKER, cohort_is_complete, generate_cohort
    from preprocess.phantom.settings import PhantomSettings

    table = values_from_mapping(PhantomSettings, stage_overrides(dataset.name, "phantom"),
                                f"dataset {dataset.name!r}, table [phantom]")
    wanted = PhantomSettings(**{**table, "out": str(Path(dataset.root)), "spacing_mm": build.spacing_mm})
    if cohort_is_complete(dataset.root, wanted):
        return
    if cohort_is_complete(dataset.root):
        print(f"the demo cohort at {dataset.root} was drawn with other settings than {wanted} "
              f"(see its {MARKER}): drawing it again")
    else:
        print(f"no finished demo cohort at {dataset.root}: generating it there first")
    generate_cohort(wanted)


def preprocess(settings: PreprocessSettings, build: BuildSettings, suv: SuvSettings) -> int:
    """Run the chain over the dataset; 0 when every scan is written or current, 1 when any failed."""
    from preprocess.pipeline import run_pipeline

    dataset = load_dataset(settings.dataset, root=settings.root or None, cache_root=settings.cache_root or None)
    if dataset.name == DEMO_DATASET:
        ensure_demo_cohort(dataset, build)
    summary = run_pipeline(settings, build, suv, dataset)
    for line in summary.lines():
        print(line, file=sys.stdout if not line.startswith(("FAILED", "MANIFEST")) else sys.stderr)
    print(f"cache: {dataset.cache_dir}")
    return 0 if summary.ok else 1


def run(settings: PreprocessSettings, build: BuildSettings, suv: SuvSettings) -> int:
    return check_manifest(settings) if settings.check else preprocess(settings, build, suv)


COMMAND = Command("python -m preprocess", "Turn a dataset's raw PET/CT scans into HDF5 cache files (one per scan).",
                  SETTINGS_CLASSES, run, presets=preprocess_presets, log_file=log_file,
                  check=lambda settings, build, suv: (resolve_shard(settings), build, suv))


def study_member_argvs(argv: Sequence[str]) -> list[list[str]] | None:
    """For `--dataset <study>`: the arguments once per member (`--dataset <member>`); None for a dataset."""
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--dataset", default=PreprocessSettings.dataset)
    parser.add_argument("--root", default="")
    known, rest = parser.parse_known_args(argv)
    path = study_file(known.dataset)
    if path is None:
        return None
    members = read_study_file(path)["members"]
    if known.root:
        raise SettingsError(f"--root names one dataset's root, study {path.stem!r} has {len(members)} members; set "
                            "each member's root in its config or its LNSTAGE_ROOT_<NAME> variable")
    return [["--dataset", member, *rest] for member in members]


def main(argv: Sequence[str] | None = None) -> int:
    """Preprocess (or `--check` the manifest) of a dataset, or of each member of a study in turn; 1 when any scan
    failed. Failures of the whole run raise."""
    members = study_member_argvs(list(sys.argv[1:] if argv is None else argv))
    if members is not None:
        return max([COMMAND.run(member) for member in members])  # every member runs; the worst status counts
    return COMMAND.run(argv)


def cli(argv: Sequence[str] | None = None) -> int:
    return exit_status(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
