"""The subcommands of `python -m cache`, each printing its result and returning the exit status."""

from __future__ import annotations

import sys
from pathlib import Path

from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import load_dataset, read_study_file, study_file
from cache.describe import diff_lines, info_lines, ls_lines
from cache.export import export_file
from cache.manifest import read_manifest
from cache.reader import cache_files, read_info
from cache.settings import SettingsError
from cache.verify import dataset_status, verify_file


def _files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(cache_files(path) if path.is_dir() else [path])
    return files


def ls(folder: str) -> int:
    print("\n".join(ls_lines(folder)))
    return 0


def info(path: str) -> int:
    print("\n".join(info_lines(read_info(path))))
    return 0


def diff(a: str, b: str) -> int:
    """Print why A and B differ; exit 1 when they do, 0 when nothing differs."""
    lines = diff_lines(a, b)
    print("\n".join(lines) if lines else "no differences in schema, settings, inputs, code version or labels")
    return 1 if lines else 0


def verify(paths: list[str], dataset: str | None, root: str | None, cache_root: str | None,
           check_inputs: bool) -> int:
    """Verify files (and with a dataset, its completeness and currency; with a study, each member's); exit 1
    naming every problem."""
    study = study_file(dataset) if dataset else None
    if study is not None:
        members = read_study_file(study)["members"]
        if paths or root:
            raise SettingsError(f"study {study.stem!r}: verify takes no files or --root; its {len(members)} members "
                                "each have their own (verify one with --dataset <member>)")
        return max([verify([], member, None, cache_root, check_inputs) for member in members])
    config = load_dataset(dataset, root=root, cache_root=cache_root) if dataset else None
    if config is not None and not paths:
        paths = [str(config.cache_dir)]
    files = _files(paths)
    bad = 0
    for check in map(verify_file, files):
        if not check.ok:
            bad += 1
            for problem in check.problems:
                print(f"BAD {problem}", file=sys.stderr)
    print(f"{len(files) - bad} of {len(files)} file(s) sound")
    if config is None:
        return 1 if bad else 0
    manifest = read_manifest(config.manifest_path, config.root, config.rule_set, check_files=False)
    folder = Path(paths[0]) if Path(paths[0]).is_dir() else config.cache_dir
    status = dataset_status(folder, manifest.rows, expected_settings(build_settings_for(dataset)), check_inputs,
                            config.atlas_bank_path)
    for key in status.missing:
        print(f"MISSING {key}: no {folder / (key + '.h5')}", file=sys.stderr)
    for key, reason in status.stale:
        print(f"STALE {key}: {reason}", file=sys.stderr)
    for key in status.extra:
        print(f"note: {key} is not in the manifest {config.manifest_path}")
    if status.unchecked_inputs:
        print(f"note: input files not reachable for {len(status.unchecked_inputs)} scan(s); their inputs were not "
              "compared")
    print(f"{len(manifest.rows)} scan(s) in the manifest: {len(status.missing)} missing, {len(status.stale)} stale")
    if not status.ok:
        print(f"rebuild with: python -m preprocess --dataset {dataset}  (missing and stale scans only)",
              file=sys.stderr)
    return 1 if bad or not status.ok else 0


def export(paths: list[str], out: str, compress: bool) -> int:
    files = _files(paths)
    for path in files:
        target = export_file(path, Path(out) / path.name, compress)
        print(f"{path} -> {target}")
    return 0


