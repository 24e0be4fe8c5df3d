"""Cache a phantom cohort with its TRUE station masks in place of multi-atlas registration.

For model studies where registration is not the question (it was ruled out as the cause of TS1's shortfall:
a cache from the true masks gives the same result as the registered one), this builds the cache in about 0.3 s
per scan instead of about 6 s. Everything else is the real chain (read, SUV, resample, crop, weight maps, station
statistics, atomic write). The stand-in replaces `preprocess.register.map_stations` in this process only.

    .venv/bin/python -m preprocess.phantom --out /tmp/big/data --patients 150 --atlases 1 --seed 7
    LNSTAGE_ROOT_DEMO=/tmp/big/data .venv/bin/python benchmarks/truth_station_cache.py /tmp/big/data /tmp/big/cache
"""

from __future__ import annotations

import argparse
import types
from pathlib import Path

import numpy as np
import SimpleITK as sitk

import preprocess.pipeline as pipeline
import preprocess.register as register
from cache.build_settings import build_settings_for
from cache.dataset import load_dataset
from preprocess.resample import grid_image, resample_like
from preprocess.settings import PreprocessSettings
from preprocess.suv import SuvSettings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="phantom cohort folder (python -m preprocess.phantom --out)")
    parser.add_argument("cache_root", help="where the demo dataset's cache goes")
    args = parser.parse_args()
    current = {}

    def true_stations(ct_hu, structures, grid, bank, registration, device):
        truth = sitk.ReadImage(str(args.root / "truth" / current["scan"] / "stations.nii.gz"))
        resampled = resample_like(truth, grid_image(grid), "nearest", 0)
        labels = sitk.GetArrayFromImage(resampled).astype(np.uint8)
        inside = (labels > 0).astype(np.float32)
        return types.SimpleNamespace(labels=labels, votes=inside, n_atlases=1, vote_fraction=inside, qa={},
                                     timings_s={})

    real_process = pipeline.process_scan

    def process_scan(row, context):
        current["scan"] = row.scan_id
        return real_process(row, context)

    register.map_stations = true_stations
    pipeline._atlas_bank = lambda context, registration: None  # noqa: SLF001  (no atlas bank to load)
    pipeline.process_scan = process_scan
    dataset = load_dataset("demo", root=str(args.root), cache_root=args.cache_root)
    summary = pipeline.run_pipeline(PreprocessSettings(dataset="demo", workers=1), build_settings_for("demo"),
                                    SuvSettings(), dataset)
    print({status: sum(o.status == status for o in summary.outcomes) for status in ("written", "skipped", "failed")})


if __name__ == "__main__":
    main()
