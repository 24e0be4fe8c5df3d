"""Text views of cache files for `python -m cache ls|info|diff`: listings, one file in full, and why two differ."""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path

import h5py

from cache import schema
from cache.build_settings import settings_differences
from cache.reader import ScanInfo, cache_files, read_info
from cache.stations import station_names


def _positives(vector) -> str:
    names = [name for name, value in zip(station_names(), vector, strict=True) if value == 1]
    return ";".join(names) if names else ("-" if (vector >= 0).all() else "?")


def _n(value: int | None) -> str:
    return "?" if value is None else f"N{value}"


def ls_lines(folder: str | Path) -> list[str]:
    """One line per cache file: key, labels (cN/pN, side, positive stations), stations, settings, version."""
    lines = [f"{'scan':<28} {'cN':>3} {'pN':>3} side {'positive (cN)':<16} stations settings         code"]
    for path in cache_files(folder):
        try:
            info = read_info(path)
        except ValueError as error:
            lines.append(f"{path.stem:<28} unreadable: {error}")
            continue
        labels = info.labels
        lines.append(f"{info.key:<28} {_n(labels.n_clinical):>3} {_n(labels.n_pathological):>3} "
                     f"{labels.tumor_side or '?':<4} {_positives(labels.station_clinical):<16} "
                     f"{len(info.stations):>8} {info.settings_hash} {info.package_version}")
    return lines


def info_lines(info: ScanInfo) -> list[str]:
    """Everything about one file except the voxels."""
    g = info.grid
    lines = [
        f"file: {info.path}", f"schema version: {info.schema_version}", f"dataset: {info.dataset}",
        f"patient_id: {info.patient_id}  scan_id: {info.scan_id}", f"created: {info.created}",
        f"package version: {info.package_version}", f"rule set: {info.rule_set}",
        f"storage: {'compressed (h5py reads)' if info.compressed else 'contiguous (memory-mapped)'}",
        f"grid: shape (z, y, x) {g.shape_zyx}, spacing (x, y, z) {g.spacing_mm} mm, origin {g.origin_mm} mm",
        f"labels: cN {_n(info.labels.n_clinical)} ({_positives(info.labels.station_clinical)}), "
        f"pN {_n(info.labels.n_pathological)} ({_positives(info.labels.station_pathological)}), "
        f"tumour side {info.labels.tumor_side or 'unknown'}",
        f"settings hash: {info.settings_hash}",
    ]
    for group, values in info.settings.items():
        lines.append(f"  [{group}] " + ", ".join(f"{k}={v!r}" for k, v in values.items()))
    lines.append(f"inputs hash: {info.inputs_hash}  ({', '.join(f'{k} {v[:12]}' for k, v in info.inputs.items())})")
    lines.append(f"stations ({len(info.stations)}): name code volume_ml suv_max suv_mean vote table centroid_vox")
    for s in info.stations.values():
        lines.append(f"  {s.name:>4} {s.code:>3} {s.volume_ml:8.2f} {s.suv_max:7.2f} {s.suv_mean:7.2f} "
                     f"{s.vote_agreement:5.2f} {s.n_voxels:>6} ({', '.join(f'{v:.1f}' for v in s.centroid_vox)})")
    return lines + qc_lines(info.path)


def qc_lines(path: str | Path) -> list[str]:
    """The preprocessing's seconds per step, its memory (peak resident and CUDA, registration estimate) and the
    registration check, as the pipeline recorded them in `/qc`; nothing for files written before these were."""
    lines = []
    with h5py.File(path, "r", locking=False) as f:
        if schema.QC_TIMINGS_GROUP in f:
            timings = dict(f[schema.QC_TIMINGS_GROUP].attrs)
            lines.append("seconds: " + ", ".join(f"{k} {float(v):.1f}" for k, v in timings.items()))
        if schema.QC_MEMORY_GROUP in f:
            memory = dict(f[schema.QC_MEMORY_GROUP].attrs)
            parts = [f"peak resident {memory.get(schema.QC_PEAK_RSS_ATTR, float('nan')):.2f} GiB"
                     + ("" if memory.get("peak_is_per_scan", True) else " (since the worker started)")]
            if schema.QC_CUDA_PEAK_ATTR in memory:
                parts.append(f"CUDA peak {memory[schema.QC_CUDA_PEAK_ATTR]:.2f} GiB")
            if "estimate_gib" in memory:
                parts.append(f"registration estimate {memory['estimate_gib']:.2f} GiB of a "
                             f"{memory['budget_gib']:.2f} GiB budget, {memory['atlas_batch']} atlas(es) at once")
            lines.append("memory: " + ", ".join(parts))
        if schema.QC_REGISTRATION_CHECK_GROUP in f:
            lines.append(registration_check_text(dict(f[schema.QC_REGISTRATION_CHECK_GROUP].attrs)))
    return lines


def registration_check_text(check: Mapping) -> str:
    """One line for a person from `/qc/registration_check`: driving and held-out structure Dice, the Jacobian
    range, and the flag with the limit each broken value is outside of."""
    held = (f"held out {float(check['held_out_dice']):.3f} (worst atlas {float(check['held_out_dice_min']):.3f})"
            if math.isfinite(float(check["held_out_dice"])) else "no structure held out")
    text = (f"registration check: structure Dice driving {float(check['driving_dice']):.3f}, {held}; Jacobian "
            f"{float(check['jacobian_min']):.2f} to {float(check['jacobian_max']):.2f}")
    flags = str(check.get(schema.QC_FLAGS_ATTR, "")).split()
    if not flags:
        return text + "; within limits"
    broken = {"held_out_dice": f"held-out Dice below {float(check['limit_held_out_dice_min']):.3f}",
              "jacobian": f"Jacobian outside {float(check['limit_jacobian_min']):.2f} to "
                          f"{float(check['limit_jacobian_max']):.2f}"}
    return text + "; FLAG " + ", ".join(broken.get(flag, flag) for flag in flags)


def file_differences(a: ScanInfo, b: ScanInfo) -> list[str]:
    """Why two files of one scan differ: schema, settings (named), inputs (by role), code version, labels."""
    lines = []
    if a.schema_version != b.schema_version:
        lines.append(f"schema version: {a.schema_version} vs {b.schema_version}")
    lines.extend(f"setting {line.replace('file ', 'A ').replace('current ', 'B ')}"
                 for line in settings_differences(a.settings, b.settings))
    lines.extend(f"setting {group}.{name}: only in B" for group, values in b.settings.items()
                 for name in values if name not in a.settings.get(group, {}))
    for role in sorted(set(a.inputs) | set(b.inputs)):
        if a.inputs.get(role) != b.inputs.get(role):
            lines.append(f"input {role}: content differs ({a.inputs.get(role, 'absent')[:12]} vs "
                         f"{b.inputs.get(role, 'absent')[:12]})")
    if a.package_version != b.package_version:
        lines.append(f"code version: {a.package_version} vs {b.package_version}")
    if a.rule_set != b.rule_set:
        lines.append(f"rule set: {a.rule_set} vs {b.rule_set}")
    if (a.labels.n_clinical, a.labels.n_pathological, a.labels.tumor_side) != (
            b.labels.n_clinical, b.labels.n_pathological, b.labels.tumor_side):
        lines.append("labels differ (manifest changed)")
    return lines


def diff_lines(a: str | Path, b: str | Path) -> list[str]:
    """Differences between two cache files, or two cache folders (matched by scan key)."""
    a, b = Path(a), Path(b)
    if a.is_file() and b.is_file():
        return file_differences(read_info(a), read_info(b))
    files_a = {p.stem: p for p in cache_files(a)}
    files_b = {p.stem: p for p in cache_files(b)}
    lines = [f"only in A: {key}" for key in sorted(set(files_a) - set(files_b))]
    lines += [f"only in B: {key}" for key in sorted(set(files_b) - set(files_a))]
    for key in sorted(set(files_a) & set(files_b)):
        lines.extend(f"{key}: {line}" for line in file_differences(read_info(files_a[key]), read_info(files_b[key])))
    return lines
