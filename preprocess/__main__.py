"""`python -m preprocess --dataset NAME`: raw PET/CT -> HDF5 cache; `--check` validates the manifest only."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path

from cache.build_settings import BuildSettings
from cache.dataset import DatasetConfig, load_dataset, stage_overrides
from cache.manifest import ManifestError, manifest_summary, read_manifest
from cache.settings import (
    SettingsError,
    format_settings,
    settings_from_namespace,
    settings_parents,
    values_from_mapping,
)
from preprocess.settings import PreprocessSettings
from preprocess.suv import SuvSettings

SETTINGS_CLASSES = (PreprocessSettings, BuildSettings, SuvSettings)
DEMO_DATASET = "demo"


def parse(argv: Sequence[str] | None) -> tuple[PreprocessSettings, BuildSettings, SuvSettings]:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Turn a dataset's raw PET/CT scans into HDF5 cache files (one per scan).",
        parents=settings_parents(*SETTINGS_CLASSES),
    )
    namespace = parser.parse_args(argv)
    dataset = getattr(namespace, "dataset", PreprocessSettings.dataset)
    table = stage_overrides(dataset, "preprocess")
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in SETTINGS_CLASSES}
    unknown = sorted(set(table) - set().union(*names.values()))
    if unknown:
        raise SettingsError(f"[preprocess] of dataset {dataset!r}: unknown setting(s) {', '.join(unknown)}; known: "
                            f"{', '.join(sorted(set().union(*names.values())))}")
    return tuple(settings_from_namespace(namespace, cls, {k: v for k, v in table.items() if k in names[cls]},
                                         source=f"[preprocess] of dataset {dataset!r}") for cls in SETTINGS_CLASSES)


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


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings, build, suv = parse(argv)
        print(format_settings(settings, build, suv))
        if settings.check:
            return check_manifest(settings)
        return preprocess(settings, build, suv)
    except (SettingsError, ManifestError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
