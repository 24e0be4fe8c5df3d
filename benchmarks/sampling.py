"""Patch sampling speed: ours from cache files vs MONAI RandWeightedCrop vs TorchIO WeightedSampler vs a copy.

2-channel (CT, SUV) 64³ float32 patches per second, one process, every library limited to one thread, warm
page cache, measured side by side in one run for two workloads:
- `one_station`: every patch from one station of one scan (the peers' best case: their sampler is built once);
- `random_station`: each patch from a random scan and station of the cache (the trainer's access pattern).

Inputs: `--scans` synthetic scans of realistic size (default 20 of 160x200x200 at 1 mm, 17 ellipsoid stations)
written with the cache writer. Ours reads them through `CacheReader` + `PatchSampler` (windowing included) into
a preallocated batch buffer. The peers get the windowed 2-channel volume and the station's dense weight map in
memory, prepared outside the timer, and their patches are copied into the same kind of batch buffer (what a
collate does). The copy limit copies in-memory windowed crops into the buffer.

    .venv/bin/python benchmarks/sampling.py --json OUT.json [--scans 20] [--shape 160 200 200] [--seconds 3]
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_variable] = "1"

import argparse  # noqa: E402 -- thread limits must be set before numpy and torch load
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cache.reader import CacheReader, cache_files  # noqa: E402
from cache.sampler import PatchSampler, SamplerSettings  # noqa: E402
from cache.writer import write_scan  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests/ holds the synthetic scans
from tests.preprocess.synthetic_scan import synthetic_record  # noqa: E402

WORKLOADS = ("one_station", "random_station")
ONE_STATION = "7"


def build_cache(folder: Path, n_scans: int, shape: tuple[int, int, int], spacing_mm: float) -> list[Path]:
    """Synthetic scans written with the cache writer (reused when the folder already holds them)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n_scans):
        path = folder / f"bench{i:03d}__s0.h5"
        if not path.exists():
            record = synthetic_record(f"bench{i:03d}", "s0", np.random.default_rng(i), shape, spacing_mm, "bench")
            write_scan(path, record)
    return cache_files(folder)[:n_scans]


def warm_page_cache(paths: list[Path]) -> None:
    for path in paths:
        with open(path, "rb") as f:
            while f.read(1 << 24):
                pass


def rate(step: Callable[[], int], seconds: float, min_calls: int = 3) -> float:
    """Patches per second of `step` (returns how many patches it made), over about `seconds`."""
    step()  # warm-up (JIT, first touches)
    made, calls, start = 0, 0, time.perf_counter()
    while calls < min_calls or time.perf_counter() - start < seconds:
        made += step()
        calls += 1
    return made / (time.perf_counter() - start)


class InMemory:
    """Windowed 2-channel volumes and dense weight maps of the cache, as the peers need them."""

    def __init__(self, reader: CacheReader, sampler: PatchSampler):
        self.reader, self.settings = reader, sampler.settings
        self.volumes = []
        for i in range(len(reader)):
            scan = reader.scan(i)
            ct = np.clip((np.asarray(scan.ct, dtype=np.float32) - self.settings.ct_window_low_hu)
                         / (self.settings.ct_window_high_hu - self.settings.ct_window_low_hu), 0, 1)
            self.volumes.append(np.stack([ct, np.asarray(scan.suv) / np.float32(self.settings.suv_window_high)]))

    def weight_map(self, scan: int, station: str) -> np.ndarray:
        """(1, z, y, x) float32 weights of a station (the probabilities its table encodes)."""
        index, cdf = self.reader.scan(scan).table(station)
        weights = np.zeros(self.volumes[scan].shape[1:], dtype=np.float32)
        weights.reshape(-1)[index] = np.diff(cdf, prepend=0.0)
        return weights[None]


def copy_step(memory: InMemory, pairs, edge: int, batch: int, rng: np.random.Generator, out: np.ndarray):
    def step() -> int:
        for b in range(batch):
            scan, station = pairs[rng.integers(len(pairs))]
            index, cdf = memory.reader.scan(scan).table(station)
            z, y, x = np.unravel_index(index[np.searchsorted(cdf, rng.random(), side="right")],
                                       memory.volumes[scan].shape[1:])
            volume = memory.volumes[scan]
            z0, y0, x0 = (min(max(c - edge // 2, 0), s - edge) for c, s in zip((z, y, x), volume.shape[1:],
                                                                            strict=True))
            out[b] = volume[:, z0:z0 + edge, y0:y0 + edge, x0:x0 + edge]
        return batch
    return step


def ours_step(sampler: PatchSampler, pairs, batch: int, rng: np.random.Generator, out: np.ndarray):
    def step() -> int:
        chosen = rng.integers(len(pairs), size=batch)
        sampler.sample([pairs[c][0] for c in chosen], [pairs[c][1] for c in chosen], rng, out=out)
        return batch
    return step


def monai_one_station(image: torch.Tensor, weights: np.ndarray, edge: int, samples: int, out: np.ndarray, seed: int):
    from monai.transforms import RandWeightedCrop

    crop = RandWeightedCrop((edge,) * 3, num_samples=samples, weight_map=torch.from_numpy(weights))
    crop.set_random_state(seed)

    def step() -> int:
        for b, patch in enumerate(crop(image)):
            out[b] = patch.numpy() if isinstance(patch, torch.Tensor) else patch
        return samples
    return step


def monai_random_station(memory: InMemory, pairs, edge: int, samples: int, out: np.ndarray,
                         rng: np.random.Generator, seconds: float) -> float:
    """MONAI when the station changes per patch: one call (num_samples=1) per patch; maps prepared untimed."""
    from monai.transforms import RandWeightedCrop

    crop = RandWeightedCrop((edge,) * 3, num_samples=1)
    crop.set_random_state(int(rng.integers(1 << 31)))
    images = [torch.from_numpy(v) for v in memory.volumes]
    timed, made = 0.0, 0
    while made < 3 or timed < seconds:
        scan, station = pairs[rng.integers(len(pairs))]
        weights = torch.from_numpy(memory.weight_map(scan, station))
        start = time.perf_counter()
        patch = crop(images[scan], weight_map=weights)[0]
        out[0] = patch.numpy()
        timed += time.perf_counter() - start
        made += 1
    return made / timed


def torchio_subject(volume: np.ndarray, weights: np.ndarray):
    import torchio as tio

    return tio.Subject(image=tio.ScalarImage(tensor=torch.from_numpy(volume)),
                       sampling_map=tio.Image(tensor=torch.from_numpy(weights), type=tio.SAMPLING_MAP))


def torchio_one_station(volume: np.ndarray, weights: np.ndarray, edge: int, batch: int, out: np.ndarray):
    import torchio as tio

    torch.manual_seed(0)  # TorchIO draws from torch's global generator
    generator = tio.data.WeightedSampler(edge, "sampling_map")(torchio_subject(volume, weights))

    def step() -> int:
        for b in range(batch):
            out[b] = next(generator)["image"].data.numpy()
        return batch
    return step


def torchio_random_station(memory: InMemory, pairs, edge: int, out: np.ndarray, rng: np.random.Generator,
                           seconds: float) -> float:
    """TorchIO when the station changes per patch: a new sampler per patch; maps prepared untimed."""
    import torchio as tio

    sampler = tio.data.WeightedSampler(edge, "sampling_map")
    timed, made = 0.0, 0
    while made < 3 or timed < seconds:
        scan, station = pairs[rng.integers(len(pairs))]
        weights = memory.weight_map(scan, station)
        start = time.perf_counter()
        patch = next(sampler(torchio_subject(memory.volumes[scan], weights), num_patches=1))
        out[0] = patch["image"].data.numpy()
        timed += time.perf_counter() - start
        made += 1
    return made / timed


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(1)
    folder = Path(args.cache) if args.cache else Path(tempfile.mkdtemp(prefix="lnstage-bench-"))
    paths = build_cache(folder, args.scans, tuple(args.shape), args.spacing_mm)
    warm_page_cache(paths)
    reader = CacheReader(paths)
    sampler = PatchSampler(reader, SamplerSettings(patch_size_vox=args.patch))
    memory = InMemory(reader, sampler)
    edge, rng = args.patch, np.random.default_rng(args.seed)
    workload_pairs = {"one_station": [(0, ONE_STATION)], "random_station": sampler.pairs()}
    out = sampler.buffer(args.batch)
    result: dict = {"copy_limit_per_s": {}, "ours_per_s": {}, "monai_per_s": {}, "torchio_per_s": {}}
    for workload, pairs in workload_pairs.items():
        result["copy_limit_per_s"][workload] = rate(copy_step(memory, pairs, edge, args.batch, rng, out), args.seconds)
        result["ours_per_s"][workload] = rate(ours_step(sampler, pairs, args.batch, rng, out), args.seconds)
    weights = memory.weight_map(0, ONE_STATION)
    image = torch.from_numpy(memory.volumes[0])
    result["monai_per_s"]["one_station"] = rate(monai_one_station(image, weights, edge, 16, out, args.seed),
                                                args.seconds)
    result["monai_per_s"]["random_station"] = monai_random_station(memory, workload_pairs["random_station"], edge,
                                                                   16, out, rng, args.seconds)
    result["torchio_per_s"]["one_station"] = rate(torchio_one_station(memory.volumes[0], weights, edge, 16, out),
                                                  args.seconds)
    result["torchio_per_s"]["random_station"] = torchio_random_station(memory, workload_pairs["random_station"],
                                                                       edge, out, rng, args.seconds)
    for workload in WORKLOADS:
        peer = max(result["monai_per_s"][workload], result["torchio_per_s"][workload])
        result.setdefault("ours_vs_copy_limit", {})[workload] = (result["ours_per_s"][workload]
                                                                 / result["copy_limit_per_s"][workload])
        result.setdefault("ours_vs_best_peer", {})[workload] = result["ours_per_s"][workload] / peer
    import monai
    import torchio

    result["setup"] = {
        "scans": len(paths), "shape_zyx": list(args.shape), "spacing_mm": args.spacing_mm, "patch": edge,
        "channels": 2, "batch": args.batch, "monai_samples_per_call": 16, "threads": 1,
        "torch": torch.__version__, "monai": monai.__version__, "torchio": torchio.__version__,
        "numpy": np.__version__, "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpu",
        "load_average": os.getloadavg(),
    }
    return result


def table(result: dict) -> str:
    lines = ["| workload | copy limit | ours | MONAI | TorchIO | ours / copy | ours / best peer |",
             "|---|---|---|---|---|---|---|"]
    for w in WORKLOADS:
        lines.append(f"| {w} | {result['copy_limit_per_s'][w]:.0f} | {result['ours_per_s'][w]:.0f} | "
                     f"{result['monai_per_s'][w]:.0f} | {result['torchio_per_s'][w]:.0f} | "
                     f"{result['ours_vs_copy_limit'][w]:.2f} | {result['ours_vs_best_peer'][w]:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the result")
    parser.add_argument("--scans", type=int, default=20)
    parser.add_argument("--shape", type=int, nargs=3, default=(160, 200, 200), help="z y x voxels")
    parser.add_argument("--spacing-mm", type=float, default=1.0)
    parser.add_argument("--patch", type=int, default=64)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--cache", help="folder for the synthetic cache files (kept and reused); default: a temp")
    parser.add_argument("--seed", type=int, default=0)
    result = run(parser.parse_args())
    Path(parser.parse_args().json).write_text(json.dumps(result, indent=2))
    print(table(result))
    print(f"load average {result['setup']['load_average']}")


if __name__ == "__main__":
    main()
