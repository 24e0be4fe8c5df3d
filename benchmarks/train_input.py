"""Is the training input pipeline ever the bottleneck? Augmented batches per second vs model steps per second.

Side by side in one run, on one device:
- input: TS1 batches drawn from cache files (random scan and station per patch, weight-map centres, windowed
  enlarged crops; DataLoader with `--num-workers`), moved to the device and augmented there (affine + elastic
  in one grid_sample, noise, centre patch), timed until the patches are on the device;
- model: forward + backward + Adam step of the station classifier on patches already on the device (AMP on
  CUDA), timed alone.
Target (DESIGN §11): input batches/s >= model steps/s. The cache files are synthetic (written by
cache.writer into a temporary folder: `--scans` volumes of `--volume-vox`^3 int16/float32, 17 station cubes).

CPU smoke run:  python benchmarks/train_input.py --device cpu --patch-size-vox 32 --batch-size 8 \
                  --channels 8 16 32 64 128 --dropout 0.05 0.1 0.2 0.2 0.2 --margin-vox 8 --volume-vox 96 \
                  --scans 4 --steps 3 --num-workers 1
GPU (the lead):  python benchmarks/train_input.py --device cuda --json $OUT/train_input.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cache.grid import Grid
from cache.reader import CacheReader
from cache.stations import stations
from cache.writer import ScanLabels, ScanRecord, StationTable, write_scan
from train.augment import AugmentSettings, augment
from train.data import CohortPart, StationBatches, epoch_plan, loader, sampler_settings, station_pairs
from train.distributed import resolve_device
from train.model import build_classifier
from train.settings import TrainSettings


def write_cache(folder: Path, n_scans: int, edge: int, rng: np.random.Generator) -> list[Path]:
    """Synthetic cache files: noise volumes with 17 station cubes (edge // 8) and uniform weight tables."""
    paths, side = [], max(2, edge // 8)
    for s in range(n_scans):
        tables, labels = [], np.zeros((edge,) * 3, dtype=np.uint8)
        for station in stations():
            corner = rng.integers(0, edge - side, 3)
            box = tuple(slice(c, c + side) for c in corner)
            labels[box] = station.code
            z, y, x = np.meshgrid(*(np.arange(c, c + side) for c in corner), indexing="ij")
            index = np.ravel_multi_index((z.ravel(), y.ravel(), x.ravel()), (edge,) * 3).astype(np.int32)
            cdf = np.arange(1, index.size + 1, dtype=np.float64) / index.size
            cdf[-1] = 1.0
            centre = tuple(float(c + side / 2) for c in corner)
            tables.append(StationTable(station.name, station.code, centre, centre[::-1],
                                       (*map(int, corner), *(int(c) + side for c in corner)), 1.0, 2.0, 1.0, 1.0,
                                       index, cdf))
        record = ScanRecord(
            dataset="bench", patient_id=f"B{s:03d}", scan_id="S0", grid=Grid((edge,) * 3, (1.0,) * 3, (0.0,) * 3),
            ct_hu=rng.integers(-1000, 1000, (edge,) * 3, dtype=np.int16),
            suv=rng.random((edge,) * 3, dtype=np.float32) * 5, station_labels=labels, stations=tuple(tables),
            labels=ScanLabels(None, None, None, np.zeros(17, np.int8), np.zeros(17, np.int8)), settings=(),
            inputs={}, rule_set="paper")
        paths.append(write_scan(folder / f"B{s:03d}__S0.h5", record))
    return paths


def bench_part(paths: list[Path], rng: np.random.Generator) -> CohortPart:
    reader = CacheReader(paths)
    n = len(paths)
    return CohortPart(reader, tuple(f"B{i}" for i in range(n)), ("S0",) * n, ("R",) * n, np.zeros(n, np.int64),
                      (rng.random((n, 17)) < 0.2).astype(np.int8), np.ones((n, 17), bool), "paper")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def input_rate(part: CohortPart, settings: TrainSettings, device: torch.device, steps: int) -> float:
    """Augmented batches per second, cache file to patches on the device."""
    dataset = StationBatches(part, sampler_settings(settings, settings.margin_vox))
    plan = epoch_plan(station_pairs(part)[2], (steps + 2) * settings.batch_size, settings.batch_size,
                      np.random.default_rng(0))
    generator = torch.Generator(device).manual_seed(0)
    augment_settings = AugmentSettings.from_train(settings)
    started, done = None, 0
    for i, batch in enumerate(loader(dataset, plan, settings.num_workers, pin_memory=device.type == "cuda")):
        patches = augment(batch.crops.to(device, non_blocking=True), settings.patch_size_vox, augment_settings,
                          generator)
        sync(device)
        if i == 1:  # the first two batches warm up workers, numba and the allocator
            started = time.perf_counter()
        elif i > 1:
            done += 1
        assert patches.shape[-1] == settings.patch_size_vox
    return done / (time.perf_counter() - started)


def model_rate(settings: TrainSettings, device: torch.device, steps: int) -> float:
    """Training steps per second of the station classifier on patches already on the device."""
    model = build_classifier(settings).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    use_amp = settings.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    patches = torch.rand(settings.batch_size, 2, *(settings.patch_size_vox,) * 3, device=device)
    station = torch.randint(0, 17, (settings.batch_size,), device=device)
    label = torch.randint(0, 2, (settings.batch_size,), device=device).float()
    started = None
    for i in range(steps + 2):
        if i == 2:
            sync(device)
            started = time.perf_counter()
        with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(patches, station), label)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    sync(device)
    return steps / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--patch-size-vox", type=int, default=64)
    parser.add_argument("--margin-vox", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32, 64, 128, 256])
    parser.add_argument("--dropout", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.2, 0.2, 0.2])
    parser.add_argument("--num-workers", type=int, default=4)
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--volume-vox", type=int, default=192)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    settings = TrainSettings(patch_size_vox=args.patch_size_vox, margin_vox=args.margin_vox,
                             batch_size=args.batch_size, channels=tuple(args.channels), dropout=tuple(args.dropout),
                             num_workers=args.num_workers)
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        part = bench_part(write_cache(Path(folder), args.scans, args.volume_vox, rng), rng)
        inputs = input_rate(part, settings, device, args.steps)
        steps = model_rate(settings, device, args.steps)
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(), "load_average_1min": os.getloadavg()[0],
        "patch_size_vox": settings.patch_size_vox, "crop_vox": settings.patch_size_vox + 2 * settings.margin_vox,
        "batch_size": settings.batch_size, "channels": list(settings.channels), "num_workers": settings.num_workers,
        "scans": args.scans, "volume_vox": args.volume_vox, "amp": device.type == "cuda",
        "input_batches_per_s": inputs, "model_steps_per_s": steps, "input_over_model": inputs / steps,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
