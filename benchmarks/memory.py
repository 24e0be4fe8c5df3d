"""Peak memory and seconds of multi-atlas registration by resolution and atlas count, on one phantom scan.

Each configuration runs in a child process, so its peak resident memory (`wait4`'s ru_maxrss, what GNU time
reports) is its own; on CUDA the child also reports torch's peak allocated memory. Default grid: 5 atlases at
1, 1.5 and 2 mm, and 1, 3, 5 and 10 atlases at 2 mm (`full` preset, CPU; `--device cuda` for the GPU).
The crop size in voxels is printed with each row so cost can be read against voxels.

`--compare-tree DIR` also runs every configuration with the code of another checkout (e.g. the commit before a
change, `git worktree add /tmp/old <commit>`), side by side in the same run: seconds and peak memory as ratios,
and whether the fused labels are equal voxel for voxel (plus the truth-node hits of both).

    .venv/bin/python benchmarks/memory.py --root /tmp/h19/p1mm [--configs 1:5 1.5:5 2:5 2:1 2:3 2:10]
        [--device cpu|cuda] [--atlas-batch auto|N] [--max-memory-gb G] [--repeat 2] [--compare-tree /tmp/old]
        [--preprocess-spacings 1 2] [--preset full|demo] [--json OUT.json]

The phantom (`python -m preprocess.phantom --spacing-mm 1 --patients 1 --atlases 10 --out ROOT`) must exist.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def child(args: argparse.Namespace) -> None:
    """One registration: the scan and `args.atlases` atlases read at `args.spacing_mm`, then `map_stations`."""
    import shutil

    import torch

    from preprocess.register import load_atlas_bank, map_stations, registration_settings
    from preprocess.register.atlas_bank import read_cropped_scan

    root = Path(args.root)
    scan_dir = sorted((root / "scans").iterdir())[0]
    with tempfile.TemporaryDirectory() as bank_dir:
        for folder in sorted((root / "atlases").iterdir())[: args.atlases]:
            os.symlink(folder, Path(bank_dir) / folder.name)
        bank = load_atlas_bank(bank_dir, args.spacing_mm, 20.0)
    scan = read_cropped_scan(scan_dir / "ct.nii.gz", scan_dir / "totalseg.nii.gz", args.spacing_mm, 20.0, "v2")
    settings = registration_settings(args.preset)
    if args.deformable_iterations:  # a memory probe: the same arrays at every level, fewer iterations
        settings = replace(settings, deformable_iterations=tuple(args.deformable_iterations))
    extra = {}
    if "atlas_batch" in inspect.signature(map_stations).parameters:
        extra = {"atlas_batch": args.atlas_batch, "memory_budget_gb": args.max_memory_gb}
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = next(int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines()
                      if line.startswith("VmRSS:")) / 2**20
    for _ in range(args.repeat):  # the last run is warm (kernels compiled, FFT plans made) when repeated
        start = time.perf_counter()
        station_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, args.device, **extra)
        seconds = time.perf_counter() - start
    np.save(args.labels_out, station_map.labels)
    shutil.copy(root / "truth" / scan_dir.name / "nodes.csv", Path(args.labels_out).with_suffix(".csv"))
    grid = scan.grid
    print(json.dumps({
        "seconds": seconds, "shape_zyx": list(grid.shape_zyx), "voxels": int(np.prod(grid.shape_zyx)),
        "grid": {"spacing": list(grid.spacing_mm), "origin": list(grid.origin_mm),
                 "direction": list(np.asarray(grid.direction).ravel())},
        "cuda_peak_gib": torch.cuda.max_memory_allocated() / 2**30 if args.device == "cuda" else None,
        "rss_before_gib": rss_before, "memory": getattr(station_map, "memory", {}),
        "timings_s": station_map.timings_s,
    }))


def run_one(tree: Path, root: Path, spacing_mm: float, atlases: int, args: argparse.Namespace,
            labels_out: Path) -> dict:
    """Run `child` with the code of `tree` in a fresh process; its JSON plus its own peak RSS in GiB."""
    command = [sys.executable, str(Path(__file__).resolve()), "--child", "--root", str(root), "--spacing-mm",
               str(spacing_mm), "--atlases", str(atlases), "--device", args.device, "--preset", args.preset,
               "--atlas-batch", args.atlas_batch, "--max-memory-gb", str(args.max_memory_gb),
               "--repeat", str(args.repeat), "--labels-out", str(labels_out), "--deformable-iterations",
               *map(str, args.deformable_iterations)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, text=True)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"{tree}: {spacing_mm} mm, {atlases} atlases failed (wait status {status})")
    result = json.loads(output.strip().splitlines()[-1])
    result["peak_rss_gib"] = usage.ru_maxrss / 2**20
    result["cpu_s"] = usage.ru_utime + usage.ru_stime  # on a shared machine a steadier figure than wall seconds
    result["system_s"] = usage.ru_stime
    return result


def node_hits(labels_path: Path, result: dict) -> tuple[int, int]:
    """Truth nodes whose centre lies in the fused station of their name (benchmarks/registration.py's count)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from registration import node_hits as count

    from cache.grid import Grid

    grid = Grid(tuple(result["shape_zyx"]), tuple(result["grid"]["spacing"]), tuple(result["grid"]["origin"]),
                tuple(result["grid"]["direction"]))
    return count(np.load(labels_path), grid, labels_path.with_suffix(".csv"))


def parse_config(text: str) -> tuple[float, int]:
    spacing, atlases = text.split(":")
    return float(spacing), int(atlases)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", required=True, help="phantom cohort drawn at the finest spacing wanted")
    parser.add_argument("--configs", nargs="*", default=["1:5", "1.5:5", "2:5", "2:1", "2:3", "2:10"],
                        help="SPACING_MM:ATLASES pairs")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--preset", default="full")
    parser.add_argument("--atlas-batch", default="auto")
    parser.add_argument("--compare-tree", default="", help="another checkout to run side by side")
    parser.add_argument("--deformable-iterations", nargs="*", type=int, default=[],
                        help="override the preset's iterations per level (a quick memory probe: same arrays)")
    parser.add_argument("--repeat", type=int, default=1, help="registrations per run; the last one is timed")
    parser.add_argument("--max-memory-gb", type=float, default=0.0, help="memory limit of each run (0: available)")
    parser.add_argument("--preprocess-spacings", nargs="*", type=float, default=[],
                        help="also run the whole `python -m preprocess` on the scan (5 atlases) at these spacings")
    parser.add_argument("--json", default="")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spacing-mm", type=float, default=2.0, help=argparse.SUPPRESS)
    parser.add_argument("--atlases", type=int, default=5, help=argparse.SUPPRESS)
    parser.add_argument("--labels-out", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args)
        return {}
    root = Path(args.root).resolve()
    trees = {"new": REPO} | ({"old": Path(args.compare_tree).resolve()} if args.compare_tree else {})
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for text in args.configs:
            spacing, atlases = parse_config(text)
            row = {"spacing_mm": spacing, "atlases": atlases, "device": args.device}
            for name, tree in trees.items():
                labels = Path(scratch) / f"{name}_{spacing}_{atlases}.npy"
                result = run_one(tree, root, spacing, atlases, args, labels)
                hits, nodes = node_hits(labels, result)
                row[name] = {**result, "node_hits": hits, "nodes": nodes}
            if "old" in row:
                new_labels = np.load(Path(scratch) / f"new_{spacing}_{atlases}.npy")
                old_labels = np.load(Path(scratch) / f"old_{spacing}_{atlases}.npy")
                row["labels_equal"] = bool(np.array_equal(new_labels, old_labels))
                row["labels_differing_voxels"] = int((new_labels != old_labels).sum())
            rows.append(row)
            print(format_row(row), flush=True)
    chains = [run_preprocess(root, spacing, args) for spacing in args.preprocess_spacings]
    result = {"load_average": os.getloadavg(), "rows": rows, "preprocess": chains}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return result


def run_preprocess(root: Path, spacing_mm: float, args: argparse.Namespace) -> dict:
    """The whole `python -m preprocess` (read to cache file written) of the phantom's first scan with its first
    5 atlases and the `full` preset: wall seconds, the process' peak RSS, and what the file recorded in /qc."""
    import h5py

    from cache import schema

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "bank").mkdir()
        for folder in sorted((root / "atlases").iterdir())[:5]:
            os.symlink(folder, scratch / "bank" / folder.name)
        rows = (root / "manifest.csv").read_text().splitlines()
        (scratch / "manifest.csv").write_text("\n".join(rows[:2]) + "\n")
        config = scratch / "memory_bench.toml"
        config.write_text(f'root = "{root}"\nmanifest = "{scratch / "manifest.csv"}"\ncache_root = "{scratch}"\n'
                          f'atlas_bank = "{scratch / "bank"}"\ntotalseg_version = "v2"\npet_nifti_is_suv = true\n'
                          f'[preprocess]\nspacing_mm = {spacing_mm}\nregistration_preset = "{args.preset}"\n')
        command = [sys.executable, "-m", "preprocess", "--dataset", str(config), "--device", args.device,
                   "--atlas-batch", args.atlas_batch, "--max-memory-gb", str(args.max_memory_gb)]
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - start
        if status != 0:
            raise RuntimeError(f"python -m preprocess at {spacing_mm} mm failed (wait status {status})")
        with h5py.File(next((scratch / "memory_bench").glob("*.h5")), "r") as f:
            memory = {k: float(v) for k, v in f[schema.QC_MEMORY_GROUP].attrs.items()}
            timings = {k: float(v) for k, v in f[schema.QC_TIMINGS_GROUP].attrs.items()}
            shape = list(f[schema.CT].shape)
    result = {"spacing_mm": spacing_mm, "seconds": seconds, "peak_rss_gib": usage.ru_maxrss / 2**20,
              "cpu_s": usage.ru_utime + usage.ru_stime, "system_s": usage.ru_stime, "minor_faults": usage.ru_minflt,
              "shape_zyx": shape, "qc_memory": memory, "timings_s": timings}
    print(f"python -m preprocess at {spacing_mm} mm (crop {'x'.join(map(str, shape))}): {seconds:.1f} s, CPU "
          f"{result['cpu_s']:.1f} s ({usage.ru_stime:.1f} s system), peak RSS {result['peak_rss_gib']:.2f} GiB "
          f"(register {timings.get('register', float('nan')):.1f} s, atlas batch "
          f"{memory.get('atlas_batch', float('nan')):.0f}, estimate {memory.get('estimate_gib', float('nan')):.2f} "
          "GiB)", flush=True)
    return result


def format_row(row: dict) -> str:
    new = row["new"]
    text = (f"{row['spacing_mm']:>4} mm {row['atlases']:>2} atlases, crop {'x'.join(map(str, new['shape_zyx']))} "
            f"({new['voxels'] / 1e6:.2f} Mvox): {new['seconds']:.1f} s, CPU {new['cpu_s']:.1f} s, peak RSS "
            f"{new['peak_rss_gib']:.2f} GiB"
            + (f", CUDA peak {new['cuda_peak_gib']:.2f} GiB" if new["cuda_peak_gib"] is not None else "")
            + f", nodes {new['node_hits']}/{new['nodes']}")
    if "old" in row:
        old = row["old"]
        text += (f" | old {old['seconds']:.1f} s, CPU {old['cpu_s']:.1f} s, {old['peak_rss_gib']:.2f} GiB: old/new "
                 f"time {old['seconds'] / new['seconds']:.2f}, CPU {old['cpu_s'] / new['cpu_s']:.2f}, memory "
                 f"{old['peak_rss_gib'] / new['peak_rss_gib']:.2f}, "
                 f"labels equal {row['labels_equal']} ({row['labels_differing_voxels']} voxels differ), "
                 f"old nodes {old['node_hits']}/{old['nodes']}")
    return text


if __name__ == "__main__":
    main()
