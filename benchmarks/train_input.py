"""Training input at the copy limit: crops delivered to the training loop per second per thread, vs a plain copy.

Side by side in one run, from the same synthetic cache files (`--scans` volumes of `--volume-vox`^3 written with
cache.writer, page cache warm), TS1 batches of `--batch-size` two-channel crops of edge patch + 2 * margin:
- copy limit: one thread copies in-memory windowed float32 crops of that edge into a batch buffer
  (`benchmarks/sampling.py`'s copy step: random scan and station, weight-map centre);
- sampler: one thread, `PatchSampler.sample` into a reused buffer (centres, int16/float32 reads, windowing);
- stream: `train.data.loader` (threads cutting into a ring of reused buffers) for each of `--threads`, the loop
  only taking the batches;
- stream over a bounded reader (with more `--scans` than `--bounded-max-open`): the stream once more, its reader
  holding at most that many files open (the reader's default; the trainer's keeps every file open), so random
  batches close and reopen files;
- processes: the previous input path, a DataLoader whose `--processes` workers each fill a new shared-memory
  batch per request (workers start per epoch: their start-up is part of their CPU time), for comparison.
Each reports crops per second of wall time and per CPU-second (crops per core kept busy for a second: on a
shared machine a thread gets only part of a core), and the latter over the copy limit's (target >= 0.5).
- with CUDA: input batches/s to patches on the device (stream, pinned buffers, non-blocking copy, affine +
  elastic + noise on the device) for each thread count, and forward + backward + Adam steps/s of the station
  classifier alone (AMP). Target: input >= model with at most 4 threads.

CPU:  .venv/bin/python benchmarks/train_input.py --device cpu --json OUT.json              (64x96^3 crops)
      .venv/bin/python benchmarks/train_input.py --device cpu --patch-size-vox 32 --margin-vox 8 --json OUT.json
      .venv/bin/python benchmarks/train_input.py --device cpu --scans 100 --volume-vox 128 --patch-size-vox 32 \
          --margin-vox 8 --threads 1 2 --processes --json OUT.json   (past the reader's default of 64 open files)
GPU:  python benchmarks/train_input.py --device cuda --threads 1 2 4 auto --json $OUT/train_input.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cache.devices import DEVICE_CHOICES, resolve_device
from cache.grid import Grid
from cache.reader import CacheReader
from cache.sampler import PatchSampler
from cache.stations import stations
from cache.writer import ScanLabels, ScanRecord, StationTable, write_scan
from train.augment import AugmentSettings, augment
from train.batch_stream import threads_setting, usable_cores
from train.data import CohortPart, StationBatches, epoch_plan, loader, sampler_settings, station_pairs
from train.model import build_classifier
from train.settings import TrainSettings

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sampling import InMemory, copy_step, ours_step, warm_page_cache  # noqa: E402 -- a sibling script, not a package


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
    """A training part over `paths`; its reader keeps every file open, as `train.data.open_study_part`'s does."""
    reader = CacheReader(paths, max_open=None)
    n = len(paths)
    return CohortPart(reader, tuple(f"B{i}" for i in range(n)), ("S0",) * n, ("R",) * n, np.zeros(n, np.int64),
                      (rng.random((n, 17)) < 0.2).astype(np.int8), np.ones((n, 17), bool), "paper",
                      ("bench",) * n, np.ones(n, bool))


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Crops made, wall seconds, and CPU seconds of this process's threads (and of its ended child processes)."""

    crops: int
    wall_s: float
    cpu_s: float

    def rates(self, limit: Timing | None = None) -> dict[str, float]:
        """Crops per second and per CPU-second (a core kept busy for a second); over `limit`'s per CPU-second."""
        rates = {"crops_per_s": self.crops / self.wall_s, "crops_per_cpu_s": self.crops / self.cpu_s}
        if limit is not None:
            rates["per_cpu_s_over_copy_limit"] = rates["crops_per_cpu_s"] / (limit.crops / limit.cpu_s)
        return rates


def cpu_seconds() -> float:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def timed(step, seconds: float) -> Timing:
    """Run `step` (returns the crops it made) for about `seconds` after one warm-up call."""
    step()
    crops, wall, cpu = 0, time.perf_counter(), cpu_seconds()
    while time.perf_counter() - wall < seconds:
        crops += step()
    return Timing(crops, time.perf_counter() - wall, cpu_seconds() - cpu)


def timed_batches(make_batches, n_batches: int, batch_size: int, per_batch=lambda batch: None) -> Timing:
    """`n_batches` batches of `make_batches()` after two warm-up batches (threads, numba, first touches); the
    CPU time counts worker processes only once they have ended, so the iterator is closed before it is read."""
    batches = iter(make_batches())
    for _ in range(2):
        per_batch(next(batches))
    wall, cpu = time.perf_counter(), cpu_seconds()
    for _ in range(n_batches):
        per_batch(next(batches))
    wall = time.perf_counter() - wall
    del batches
    return Timing(n_batches * batch_size, wall, cpu_seconds() - cpu)


class SharedMemoryBatches(torch.utils.data.Dataset):
    """The previous input path: each DataLoader worker fills a new shared-memory batch per request."""

    def __init__(self, dataset: StationBatches):
        self.dataset = dataset

    def __getitem__(self, request):
        crops = torch.empty(self.dataset.crop_shape(len(request.items))).share_memory_()
        return self.dataset.assemble(request, crops)


def copy_limit(part: CohortPart, dataset: StationBatches, batch: int, seconds: float) -> Timing:
    """One thread copying in-memory windowed float32 crops of the same edge into a batch buffer."""
    memory = InMemory(part.reader, dataset.sampler)
    out = dataset.sampler.buffer(batch)
    return timed(copy_step(memory, dataset.sampler.pairs(), out.shape[-1], batch, np.random.default_rng(1), out),
                 seconds)


def sampler_timing(dataset: StationBatches, batch: int, seconds: float) -> Timing:
    """`PatchSampler.sample` in this thread, into a reused buffer."""
    sampler: PatchSampler = dataset.sampler
    return timed(ours_step(sampler, sampler.pairs(), batch, np.random.default_rng(2), sampler.buffer(batch)), seconds)


def device_input_rate(dataset: StationBatches, plan, threads, settings: TrainSettings, device: torch.device,
                      n_batches: int) -> float:
    """Batches/s from cache files to augmented patches on the device."""
    generator = torch.Generator(device).manual_seed(0)
    augment_settings = AugmentSettings.from_train(settings)

    def to_patches(batch) -> None:
        augment(batch.crops.to(device, non_blocking=True), settings.patch_size_vox, augment_settings, generator)
        sync(device)
    timing = timed_batches(lambda: loader(dataset, plan, threads, pin_memory=device.type == "cuda"), n_batches,
                           settings.batch_size, to_patches)
    return n_batches / timing.wall_s


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


def stream_rates(dataset: StationBatches, plan, threads, n: int, batch: int, limit: Timing) -> dict:
    """The training stream's rates with `threads`, and the threads it used."""
    streams: list = []

    def stream():
        streams.append(loader(dataset, plan, threads, pin_memory=False))
        return streams[-1]
    timing = timed_batches(stream, n, batch)
    used = streams[0].threads or 1  # 0: cut in the loop's own thread
    rates = timing.rates(limit)
    return {"threads": threads, "threads_used": used, **rates, "crops_per_s_per_thread": rates["crops_per_s"] / used}


def measure(part: CohortPart, settings: TrainSettings, args: argparse.Namespace, device: torch.device,
            bounded: CohortPart | None = None) -> dict:
    """Every measurement on `part`; the stream once more on `bounded` (the same files, a reader holding at most
    `--bounded-max-open` of them) when given."""
    crop = sampler_settings(settings, settings.margin_vox)
    dataset = StationBatches(part, crop)
    batch, n = settings.batch_size, args.batches
    plan = epoch_plan(station_pairs(part)[2], (n + 2) * batch, batch, np.random.default_rng(0))
    limit = copy_limit(part, dataset, batch, args.seconds)
    result: dict = {"copy_limit": limit.rates(), "sampler": sampler_timing(dataset, batch, args.seconds).rates(limit),
                    "stream": [stream_rates(dataset, plan, t, n, batch, limit) for t in args.threads],
                    "processes": []}
    if bounded is not None:
        result["stream_bounded_reader"] = {
            "max_open": bounded.reader.max_open,
            **stream_rates(StationBatches(bounded, crop), plan, args.threads[0], n, batch, limit)}
    for workers in args.processes:
        timing = timed_batches(lambda workers=workers: torch.utils.data.DataLoader(
            SharedMemoryBatches(dataset), batch_size=None, sampler=plan, num_workers=workers), n, batch)
        rates = timing.rates(limit)
        result["processes"].append({"workers": workers, **rates,
                                    "crops_per_s_per_worker": rates["crops_per_s"] / max(1, workers)})
    if device.type == "cuda":
        result["device_input_batches_per_s"] = {
            str(t): device_input_rate(dataset, plan, t, settings, device, n) for t in args.threads}
        result["model_steps_per_s"] = model_rate(settings, device, args.steps)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    parser.add_argument("--patch-size-vox", type=int, default=64)
    parser.add_argument("--margin-vox", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--channels", type=int, nargs="+", default=None,
                        help="conv blocks of the model (default: six for 64^3 patches, five for 32^3)")
    parser.add_argument("--threads", type=threads_setting, nargs="+", default=[1, 2, "auto"],
                        help="thread counts of the stream to measure (0, N or auto)")
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2],
                        help="DataLoader worker processes of the previous path to measure (none: skip)")
    parser.add_argument("--scans", type=int, default=8)
    parser.add_argument("--bounded-max-open", type=int, default=64,
                        help="with more scans than this, the stream once more (first --threads) over a reader "
                             "holding at most this many files open (the reader's default; the trainer keeps all)")
    parser.add_argument("--volume-vox", type=int, default=160)
    parser.add_argument("--batches", type=int, default=8, help="timed batches per measurement (after 2 warm-up)")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per copy-limit and sampler measurement")
    parser.add_argument("--steps", type=int, default=20, help="timed model steps (CUDA)")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    channels = tuple(args.channels or ((8, 16, 32, 64, 128, 256) if args.patch_size_vox >= 64 else
                                       (8, 16, 32, 64, 128)))
    settings = TrainSettings(patch_size_vox=args.patch_size_vox, margin_vox=args.margin_vox,
                             batch_size=args.batch_size, channels=channels,
                             dropout=(0.05, 0.1, 0.2, 0.2, 0.2, 0.2, 0.2)[:len(channels)])
    rng = np.random.default_rng(0)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_cache(Path(folder), args.scans, args.volume_vox, rng)
        warm_page_cache(paths)
        part = bench_part(paths, rng)
        bounded = (replace(part, reader=CacheReader(paths, max_open=args.bounded_max_open))
                   if args.scans > args.bounded_max_open else None)
        result = measure(part, settings, args, device, bounded)
    result["setup"] = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "machine": f"{platform.processor() or platform.machine()}, {usable_cores()} usable cores",
        "load_average_before_after": [load_before[0], os.getloadavg()[0]], "torch": torch.__version__,
        "patch_size_vox": settings.patch_size_vox, "crop_vox": settings.patch_size_vox + 2 * settings.margin_vox,
        "batch_size": settings.batch_size, "channels": list(settings.channels), "scans": args.scans,
        "volume_vox": args.volume_vox, "amp": device.type == "cuda",
        "max_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
