"""GPU timing of multi-atlas registration: 5 atlases on a 1 mm phantom scan, and GPU vs CPU label agreement.

One command for a GPU machine (the target is <= 10 s per scan at 1 mm with the `full` preset):

    .venv/bin/python benchmarks/gpu_registration.py --device cuda --json $OUT/gpu_registration.json

Generates a small phantom cohort (1 mm for the timing, 2 mm for the comparison) when `--root` lacks it, times
`map_stations` per scan on the device (the first call, with CUDA start-up, is reported apart), then registers one
2 mm scan on the device and on the CPU and reports the fraction of voxels whose fused label agrees (over voxels
that either labels as a station) and the node mapping accuracy of both. Runs on CPU with tiny sizes for tests.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from preprocess.register import load_atlas_bank, map_stations, registration_settings
from preprocess.register.atlas_bank import read_cropped_scan


def ensure_cohort(root: Path, patients: int, spacing_mm: float, extent_mm: tuple[float, float, float] | None) -> None:
    if (root / "manifest.csv").is_file():
        return
    from preprocess.phantom.cohort import generate_cohort
    from preprocess.phantom.settings import PhantomSettings

    extra = {} if extent_mm is None else {"extent_mm": tuple(extent_mm)}
    generate_cohort(PhantomSettings(out=str(root), patients=patients, atlases=5, seed=3, spacing_mm=spacing_mm,
                                    **extra))


def _node_accuracy(labels, grid, nodes_csv: Path) -> float | None:
    import csv

    from cache.stations import station_names

    with open(nodes_csv, newline="") as f:
        nodes = list(csv.DictReader(f))
    if not nodes:
        return None
    points = np.array([[float(n["x_mm"]), float(n["y_mm"]), float(n["z_mm"])] for n in nodes])
    index = np.rint(grid.physical_to_index(points)).astype(int)
    index = np.clip(index, 0, np.asarray(labels.shape) - 1)
    names = station_names()
    hits = [labels[tuple(i)] > 0 and names[labels[tuple(i)] - 1] == n["station"] for i, n in zip(index, nodes,
                                                                                                 strict=True)]
    return float(np.mean(hits))


def _scans(root: Path, spacing_mm: float, margin_mm: float, count: int):
    for folder in sorted((root / "scans").iterdir())[:count]:
        yield folder.name, read_cropped_scan(folder / "ct.nii.gz", folder / "totalseg.nii.gz", spacing_mm, margin_mm,
                                             "v2")


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    result = {"device": args.device, "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cpus": os.cpu_count(), "preset": args.preset,
              "load_average_start": os.getloadavg()}
    settings = registration_settings(args.preset)
    if args.smoke:
        settings = replace(settings, linear_iterations=(5,) * len(settings.linear_iterations),
                           deformable_iterations=(5,) * len(settings.deformable_iterations))
    root = Path(args.root)
    timing_root = root / f"phantom_{args.spacing_mm:g}mm"
    ensure_cohort(timing_root, args.scans, args.spacing_mm, args.extent_mm)
    bank = load_atlas_bank(timing_root / "atlases", args.spacing_mm, args.crop_margin_mm)
    runs = []
    for name, scan in _scans(timing_root, args.spacing_mm, args.crop_margin_mm, args.scans):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        station_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, args.device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
        runs.append({"scan": name, "shape_zyx": list(scan.grid.shape_zyx), "seconds": seconds,
                     "timings_s": station_map.timings_s,
                     "node_accuracy": _node_accuracy(station_map.labels, scan.grid,
                                                     timing_root / "truth" / name / "nodes.csv")})
        print(f"{name} {scan.grid.shape_zyx} on {args.device}: {seconds:.2f} s", flush=True)
    result["timing_spacing_mm"] = args.spacing_mm
    result["runs"] = runs
    warm = [r["seconds"] for r in runs[1:]] or [runs[0]["seconds"]]
    result["seconds_per_scan_first"] = runs[0]["seconds"]
    result["seconds_per_scan_warm_mean"] = float(np.mean(warm))

    compare_root = root / f"phantom_{args.compare_spacing_mm:g}mm"
    ensure_cohort(compare_root, 1, args.compare_spacing_mm, args.extent_mm)
    compare_bank = load_atlas_bank(compare_root / "atlases", args.compare_spacing_mm, args.crop_margin_mm)
    name, scan = next(_scans(compare_root, args.compare_spacing_mm, args.crop_margin_mm, 1))
    maps = {}
    for where in (args.device, "cpu"):
        start = time.perf_counter()
        maps[where] = map_stations(scan.ct_hu, scan.structures, scan.grid, compare_bank, settings, where)
        print(f"comparison scan {name} on {where}: {time.perf_counter() - start:.1f} s", flush=True)
    a, b = maps[args.device].labels, maps["cpu"].labels
    either = (a > 0) | (b > 0)
    nodes_csv = compare_root / "truth" / name / "nodes.csv"
    result["comparison"] = {
        "scan": name, "spacing_mm": args.compare_spacing_mm,
        "label_agreement": float((a == b)[either].mean()) if either.any() else 1.0,
        "node_accuracy_device": _node_accuracy(a, scan.grid, nodes_csv),
        "node_accuracy_cpu": _node_accuracy(b, scan.grid, nodes_csv),
    }
    result["load_average_end"] = os.getloadavg()
    return result


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--root", default="/tmp/lnstage-gpu-registration", help="phantom cohorts (made if missing)")
    parser.add_argument("--scans", type=int, default=3, help="scans timed (the first includes CUDA start-up)")
    parser.add_argument("--spacing-mm", type=float, default=1.0)
    parser.add_argument("--compare-spacing-mm", type=float, default=2.0)
    parser.add_argument("--crop-margin-mm", type=float, default=20.0)
    parser.add_argument("--preset", default="full", choices=("full", "demo"))
    parser.add_argument("--extent-mm", type=float, nargs=3, default=None, help="phantom field of view (x, y, z)")
    parser.add_argument("--smoke", action="store_true", help="5 iterations per level: checks the script, not speed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse(argv)
    result = run(args)
    Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k != "runs"}, indent=1))
    return result


if __name__ == "__main__":
    main()
