"""How well SUVmax alone separates malignant from benign stations in the phantom, and how fast the phantom is.

For `--scans` patients (drawn exactly as `python -m preprocess.phantom` draws them, in memory), take SUVmax of
the PET (on the CT grid) over each true station mask and find the single threshold with the best station
balanced accuracy. The design target is 0.70-0.85: SUVmax helps but does not solve the task. Then time writing
a `--timing-patients` + 5 atlas cohort at the same spacing.

    .venv/bin/python benchmarks/phantom_separability.py --scans 200 --json OUT.json
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from cache.stations import station_by_code
from preprocess.phantom.cohort import LABEL_STREAM, PATIENT_STREAM, generate_cohort
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.labels import draw_stage_labels
from preprocess.phantom.pet import pet_on_ct_grid
from preprocess.phantom.scan import simulate_scan
from preprocess.phantom.settings import PhantomSettings


def best_threshold(values: np.ndarray, malignant: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) of the best rule `value >= threshold -> malignant`."""
    order = np.argsort(-values)
    v, y = values[order], malignant[order]
    tp = np.cumsum(y)
    fp = np.cumsum(~y)
    last = np.r_[v[1:] != v[:-1], True]  # only cut between distinct values
    sensitivity = tp[last] / max(y.sum(), 1)
    specificity = 1.0 - fp[last] / max((~y).sum(), 1)
    balanced = (sensitivity + specificity) / 2.0
    best = int(np.argmax(balanced))
    return float(v[last][best]), float(balanced[best])


def station_suv_max(settings: PhantomSettings, scans: int) -> tuple[np.ndarray, np.ndarray]:
    grid = field_grid(settings.extent_mm, settings.spacing_mm)
    values, labels = [], []
    for i in tqdm(range(scans), desc="scans", unit="scan"):
        rng = np.random.default_rng([settings.seed, PATIENT_STREAM, i])
        stage = draw_stage_labels(np.random.default_rng([settings.seed, LABEL_STREAM, i]))
        scan = simulate_scan(rng, grid, stage, settings.pet_factor)
        suv = pet_on_ct_grid(scan.suv, settings.pet_factor, grid.shape_zyx)
        codes = np.arange(1, 18)
        values.append(ndimage.maximum(suv, scan.stations, index=codes))
        labels.append([station_by_code(int(c)).name in stage.positive for c in codes])
    return np.concatenate(values), np.concatenate(labels).astype(bool)


def time_cohort(settings: PhantomSettings, patients: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        generate_cohort(PhantomSettings(**{**settings.__dict__, "out": str(Path(folder) / "demo"),
                                           "patients": patients, "atlases": 5}))
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=200)
    parser.add_argument("--spacing-mm", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timing-patients", type=int, default=40, help="0 skips the timing")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    settings = PhantomSettings(seed=args.seed, spacing_mm=args.spacing_mm)
    start = time.perf_counter()
    values, malignant = station_suv_max(settings, args.scans)
    in_memory_s = time.perf_counter() - start
    threshold, balanced = best_threshold(values, malignant)
    result = {
        "scans": args.scans, "spacing_mm": args.spacing_mm, "stations": int(len(values)),
        "malignant_stations": int(malignant.sum()), "best_suv_max_threshold": round(threshold, 3),
        "best_balanced_accuracy": round(balanced, 4), "target": [0.70, 0.85],
        "suv_max_median_malignant": round(float(np.median(values[malignant])), 3),
        "suv_max_median_benign": round(float(np.median(values[~malignant])), 3),
        "simulate_s_per_scan": round(in_memory_s / args.scans, 3),
        "cpu_count": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }
    if args.timing_patients:
        result["cohort_patients"] = args.timing_patients
        result["cohort_atlases"] = 5
        result["cohort_generation_s"] = round(time_cohort(settings, args.timing_patients), 1)
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
