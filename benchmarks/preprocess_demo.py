"""`python -m preprocess --dataset demo` end to end, timed, and the fused stations checked against the truth.

Generates the 30-scan phantom cohort (2 mm, 5 atlases) in `--root` when it is not there (timed apart), runs the
preprocessing chain with the demo settings, verifies every cache file, and reports the fraction of true lymph
node centres that fall in the fused station of the right name (target >= 0.90) and in the right zone.

    .venv/bin/python benchmarks/preprocess_demo.py --root /tmp/lnstage-demo --json OUT.json [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from cache.build_settings import build_settings_for
from cache.dataset import load_dataset
from cache.devices import DEVICE_CHOICES
from cache.manifest import read_manifest
from cache.reader import read_info
from cache.verify import verify_file
from evaluate.atlas_analysis import cohort_mapping_accuracy, mapping_markdown
from preprocess.__main__ import ensure_demo_cohort
from preprocess.__main__ import main as preprocess_main


def run(args: argparse.Namespace) -> dict:
    dataset = load_dataset("demo", root=args.root, cache_root=args.cache_root)
    start = time.perf_counter()
    ensure_demo_cohort(dataset, build_settings_for("demo"))
    generate_s = time.perf_counter() - start
    argv = ["--dataset", "demo", "--root", args.root, "--workers", str(args.workers), "--device", args.device]
    if args.cache_root:
        argv += ["--cache-root", args.cache_root]
    if args.force:
        argv.append("--force")
    start = time.perf_counter()
    status = preprocess_main(argv)
    preprocess_s = time.perf_counter() - start
    rows = read_manifest(dataset.manifest_path, dataset.root).rows
    paths = [dataset.cache_dir / f"{row.key}.h5" for row in rows]
    present = [p for p in paths if p.is_file()]
    sound = sum(verify_file(p).ok for p in present)
    accuracy = cohort_mapping_accuracy(present, [read_info(p).scan_id for p in present], Path(dataset.root) / "truth")
    print(mapping_markdown(accuracy) if accuracy else "no truth nodes found")
    return {
        "exit_status": status, "scans": len(rows), "cache_files": len(present), "sound_files": sound,
        "generate_s": generate_s, "preprocess_s": preprocess_s,
        "node_station_accuracy": accuracy.station_accuracy if accuracy else None,
        "node_zone_accuracy": accuracy.zone_accuracy if accuracy else None,
        "nodes": accuracy.n_nodes if accuracy else 0, "nodes_unmapped": accuracy.n_unmapped if accuracy else 0,
        "workers": args.workers, "cpus": os.cpu_count(), "load_average": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--root", default="/tmp/lnstage-demo", help="demo dataset root (generated when missing)")
    parser.add_argument("--cache-root", default=None, help="cache root (default: <root>/cache)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu", choices=DEVICE_CHOICES)
    parser.add_argument("--force", action="store_true", help="rebuild current cache files too")
    result = run(parser.parse_args())
    Path(parser.parse_args().json).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
