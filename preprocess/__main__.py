"""`python -m preprocess --dataset NAME`: raw PET/CT -> HDF5 cache; `--check` validates the manifest only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from cache.dataset import load_dataset, stage_overrides
from cache.manifest import ManifestError, manifest_summary, read_manifest
from cache.settings import SettingsError, format_settings, settings_from_namespace, settings_parents
from preprocess.settings import PreprocessSettings


def parse(argv: Sequence[str] | None) -> PreprocessSettings:
    parser = argparse.ArgumentParser(
        prog="python -m preprocess",
        description="Turn a dataset's raw PET/CT scans into HDF5 cache files (one per scan).",
        parents=settings_parents(PreprocessSettings),
    )
    namespace = parser.parse_args(argv)
    dataset = getattr(namespace, "dataset", PreprocessSettings.dataset)
    return settings_from_namespace(namespace, PreprocessSettings, stage_overrides(dataset, "preprocess"),
                                   source=f"[preprocess] of dataset {dataset!r}")


def check_manifest(settings: PreprocessSettings) -> int:
    """Validate every row of the dataset's manifest and print a per-column summary; 1 if any row is bad."""
    dataset = load_dataset(settings.dataset, root=settings.root or None, cache_root=settings.cache_root or None)
    manifest = read_manifest(dataset.manifest_path, dataset.root, dataset.rule_set)
    print(manifest_summary(manifest, dataset.label_column))
    for issue in manifest.issues:
        print(f"error: {issue}", file=sys.stderr)
    return 1 if manifest.issues else 0


def main(argv: Sequence[str] | None = None) -> int:
    try:
        settings = parse(argv)
        print(format_settings(settings))
        if settings.check:
            return check_manifest(settings)
    except (SettingsError, ManifestError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print("error: the processing chain is not built yet; only --check works", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
