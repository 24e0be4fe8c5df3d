"""`python -m evaluate predict` on one phantom scan whose PET is a DICOM series, timed step by step.

Generates a small phantom dataset in `--root` when missing (patients with DICOM PET, the atlas bank), writes a
dataset config beside it with the given spacing and the demo registration preset, and, unless `--model` names a
trained fold, an untrained checkpoint of the demo architecture (the timings do not depend on the weights).
Runs predict `--repeats` times on a fresh output folder each time (so registration runs every time) and
writes the per-step timings of each run. Target: <= 3 min on 2 CPU cores, <= 15 s on a GPU
(docs/architecture.md#performance-targets).

    .venv/bin/python benchmarks/predict_timing.py --device cuda --json $OUT/predict_timing.json
    .venv/bin/python benchmarks/predict_timing.py --device cpu --spacing-mm 4 --atlases 2 --json /tmp/p.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

import torch

from cache.devices import DEVICE_CHOICES, resolve_device
from cache.settings import settings_dict
from evaluate.__main__ import main as evaluate_main
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from train.checkpoint import save_checkpoint
from train.model import build_model
from train.settings import TrainSettings


def prepare(args: argparse.Namespace) -> tuple[Path, Path, Path]:
    """The phantom root, its dataset config, and a model fold folder."""
    root = Path(args.root)
    if not (root / "manifest.csv").is_file():
        generate_cohort(PhantomSettings(out=str(root), patients=1, atlases=args.atlases, spacing_mm=args.spacing_mm,
                                        dicom_pet_fraction=1.0))
    config = root / "predict_timing.toml"
    config.write_text(f'root = "{root}"\ntotalseg_version = "v2"\n[preprocess]\nspacing_mm = {args.spacing_mm}\n'
                      'registration_preset = "demo"\n')
    if args.model:
        return root, config, Path(args.model)
    settings = TrainSettings(dataset=str(config), channels=(8, 16, 32, 64, 128),
                             dropout=(0.05, 0.1, 0.2, 0.2, 0.2), patch_size_vox=32)
    fold = root / "untrained" / "fold0"
    fold.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    save_checkpoint(fold / "best.pt", {"model": build_model(settings).state_dict(), "stage": "ts1",
                                       "settings": settings_dict(settings)["TrainSettings"]})
    return root, config, fold


def run(args: argparse.Namespace) -> dict:
    root, config, model = prepare(args)
    scan = sorted((root / "scans").iterdir())[0]
    runs = []
    for repeat in range(args.repeats):
        out = root / f"predict_{repeat}"
        shutil.rmtree(out, ignore_errors=True)
        start = time.perf_counter()
        evaluate_main(["predict", "--ct", str(scan / "ct.nii.gz"), "--pet", str(scan / "pet_dicom"), "--totalseg",
                       str(scan / "totalseg.nii.gz"), "--model", str(model), "--dataset", str(config),
                       "--out", str(out), "--device", args.device])
        wall_s = time.perf_counter() - start
        runs.append({"wall_s": wall_s, "timings_s": json.loads((out / "prediction.json").read_text())["timings_s"]})
    return {"device": args.device, "cuda": torch.cuda.get_device_name() if args.device == "cuda" else None,
            "spacing_mm": args.spacing_mm, "atlases": args.atlases, "trained_model": bool(args.model),
            "runs": runs, "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": os.getloadavg()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--root", default="/tmp/lnstage-predict-timing", help="phantom root (generated when missing)")
    parser.add_argument("--model", default="", help="a trained fold folder (default: untrained demo architecture)")
    parser.add_argument("--spacing-mm", type=float, default=2.0)
    parser.add_argument("--atlases", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2, help="the first run on a GPU includes CUDA start-up")
    args = parser.parse_args()
    args.device = resolve_device(args.device).type
    result = run(args)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=1))
    for i, r in enumerate(result["runs"]):
        steps = ", ".join(f"{k} {v:.1f}" for k, v in r["timings_s"].items())
        print(f"run {i}: {r['wall_s']:.1f} s wall; {steps}")


if __name__ == "__main__":
    main()
