"""Patch sampler over cache files: weighted station centres, windowed CT/SUV crops, optional station mask.

A centre is drawn by binary search of a uniform number in a station's float64 cdf (`np.searchsorted`), so a
draw costs O(log n) and nothing is rebuilt when the next patch comes from another scan or station. The crop is
read from the memory-mapped volumes into a preallocated batch buffer and windowed on the way in (one pass):

- channel 0, CT: [ct_window_low_hu, ct_window_high_hu] HU -> [0, 1], clipped;
- channel 1, SUV: [0, suv_window_high] -> [0, 1], not clipped (high uptake stays visible above 1);
- channel 2 (optional): 1 inside the patch's station, 0 elsewhere.

Outside the volume the crop is padded with 0 in every channel (air below the CT window, no uptake, no station).
The crop edge is `patch_size_vox + 2 * margin_vox`: the margin leaves room for rotation or elastic deformation
before the trainer cuts the centre patch. For an even edge E the centre voxel sits at index E // 2 of the crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field

import h5py
import numba
import numpy as np

from cache.reader import CacheReader, CacheScan, StationInfo


@dataclass(frozen=True)
class SamplerSettings:
    """How patches are cut and windowed (the same in training and inference)."""

    patch_size_vox: int = field(default=64, metadata={"help": "edge of the cubic patch, in voxels"})
    margin_vox: int = field(default=0, metadata={"help": "extra voxels per side of the crop, for augmentation"})
    ct_window_low_hu: float = field(default=-200.0, metadata={"help": "CT HU mapped to 0 (clipped below)"})
    ct_window_high_hu: float = field(default=400.0, metadata={"help": "CT HU mapped to 1 (clipped above)"})
    suv_window_high: float = field(default=4.0, metadata={"help": "SUV mapped to 1 (0 maps to 0; not clipped)"})
    station_mask_channel: bool = field(default=False, metadata={"help": "add a binary station-mask channel"})

    @property
    def crop_edge_vox(self) -> int:
        return self.patch_size_vox + 2 * self.margin_vox

    @property
    def n_channels(self) -> int:
        return 3 if self.station_mask_channel else 2


@dataclass(frozen=True)
class PatchBatch:
    """A batch of crops: `image` float32 (B, C, E, E, E) with C = CT, SUV[, station mask]; `centre_vox` int64
    (B, 3) crop centres (z, y, x) in each scan's voxel grid; `scan` the reader's scan ids; `station_code`."""

    image: np.ndarray
    centre_vox: np.ndarray
    scan: np.ndarray
    station_code: np.ndarray


def draw_centres(index: np.ndarray, cdf: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n flat voxel indices of one station, with probability proportional to its weight map.

    `cdf` is float64 and ends at exactly 1.0: a float32 running sum drifts over millions of voxels.
    """
    return np.asarray(index)[np.searchsorted(cdf, rng.random(n), side="right")]


def centroid_centre(station: StationInfo) -> tuple[int, int, int]:
    """The deterministic inference centre of a station: its centroid, rounded to a voxel (z, y, x)."""
    return tuple(int(np.floor(v + 0.5)) for v in station.centroid_vox)


@numba.njit(cache=True, nogil=True, fastmath=True)
def _window_into(flat, shape, start, out, low, scale, clip):
    """out = (volume[crop] - low) * scale, optionally clipped to [0, 1], 0 outside the volume.

    `flat` is the C-ordered (z, y, x) volume of `shape` as 1-D. Rows are copied through 1-D slices indexed from
    0, with the bounds tests hoisted out of the row loop, so LLVM vectorises it (about 4x faster than 3-D
    indexing with per-voxel tests).
    """
    depth, height, width = shape
    edge_z, edge_y, edge_x = out.shape
    o = out.reshape(-1)
    k0 = min(max(-start[2], 0), edge_x)
    k1 = max(min(width - start[2], edge_x), k0)
    n = k1 - k0
    zero, one = np.float32(0.0), np.float32(1.0)
    for i in range(edge_z):
        z = start[0] + i
        for j in range(edge_y):
            y = start[1] + j
            row = (i * edge_y + j) * edge_x
            if z < 0 or z >= depth or y < 0 or y >= height:
                o[row:row + edge_x] = 0.0
                continue
            o[row:row + k0] = 0.0
            o[row + k1:row + edge_x] = 0.0
            first = (z * height + y) * width + start[2] + k0
            source = flat[first:first + n]
            target = o[row + k0:row + k1]
            if clip:
                for k in range(n):
                    value = (np.float32(source[k]) - low) * scale
                    target[k] = zero if value < zero else (one if value > one else value)
            else:
                for k in range(n):
                    target[k] = (np.float32(source[k]) - low) * scale


@numba.njit(cache=True, nogil=True)
def _window_pair_into(ct, suv, shape, start, out, ct_low, ct_scale, suv_scale):
    """CT and SUV channels of one crop from mapped volumes of one shape, in one call (half the dispatch cost)."""
    _window_into(ct, shape, start, out[0], ct_low, ct_scale, True)
    _window_into(suv, shape, start, out[1], np.float32(0.0), suv_scale, False)


@numba.njit(cache=True, nogil=True)
def _mask_into(flat, shape, start, out, code):
    """out = 1 where the crop of the (z, y, x) label volume equals `code`, else 0 (also outside the volume)."""
    depth, height, width = shape
    edge_z, edge_y, edge_x = out.shape
    o = out.reshape(-1)
    k0 = min(max(-start[2], 0), edge_x)
    k1 = max(min(width - start[2], edge_x), k0)
    for i in range(edge_z):
        z = start[0] + i
        for j in range(edge_y):
            y = start[1] + j
            row = (i * edge_y + j) * edge_x
            o[row:row + edge_x] = 0.0
            if z < 0 or z >= depth or y < 0 or y >= height:
                continue
            first = (z * height + y) * width + start[2] + k0
            source = flat[first:first + k1 - k0]
            target = o[row + k0:row + k1]
            for k in range(k1 - k0):
                target[k] = 1.0 if source[k] == code else 0.0


def _source(volume, start: np.ndarray, edge: int) -> tuple[np.ndarray, tuple[int, int, int], np.ndarray]:
    """(flat volume, its shape, crop start in it): the mapped volume itself, or (for a compressed file) the part
    of the crop inside the volume, read through h5py."""
    if not isinstance(volume, h5py.Dataset):
        return volume.reshape(-1), volume.shape, start
    low = np.clip(start, 0, volume.shape)
    high = np.clip(start + edge, 0, volume.shape)
    if np.any(high <= low):
        return np.zeros(1, dtype=volume.dtype), (1, 1, 1), np.full(3, -edge - 1)
    region = np.ascontiguousarray(volume[low[0]:high[0], low[1]:high[1], low[2]:high[2]])
    return region.reshape(-1), region.shape, start - low


def read_crop(scan: CacheScan, centre_vox: Sequence[int], settings: SamplerSettings, out: np.ndarray,
              station_code: int = 0) -> np.ndarray:
    """Fill `out` (C, E, E, E) float32 with the windowed crop of `scan` centred on `centre_vox` (z, y, x)."""
    edge = settings.crop_edge_vox
    start = np.asarray(centre_vox, dtype=np.int64) - edge // 2
    ct_low = np.float32(settings.ct_window_low_hu)
    ct_scale = np.float32(1.0 / (settings.ct_window_high_hu - settings.ct_window_low_hu))
    suv_scale = np.float32(1.0 / settings.suv_window_high)
    if scan.memory_mapped:
        _window_pair_into(scan.ct.reshape(-1), scan.suv.reshape(-1), scan.ct.shape, start, out, ct_low, ct_scale,
                          suv_scale)
    else:
        _window_into(*_source(scan.ct, start, edge), out[0], ct_low, ct_scale, True)
        _window_into(*_source(scan.suv, start, edge), out[1], np.float32(0.0), suv_scale, False)
    if settings.station_mask_channel:
        _mask_into(*_source(scan.station_labels, start, edge), out[2], np.uint8(station_code))
    return out


class PatchSampler:
    """Cuts batches of station patches from the files of a `CacheReader`.

    `sample` draws each centre from its station's weight map (training); `centroid` takes the station
    centroid (inference, deterministic). Both fill a preallocated (B, C, E, E, E) buffer when `out` is given.
    """

    def __init__(self, reader: CacheReader, settings: SamplerSettings | None = None):
        settings = settings or SamplerSettings()
        if settings.patch_size_vox < 1 or settings.margin_vox < 0:
            raise ValueError(f"patch_size_vox must be >= 1 and margin_vox >= 0, got {settings}")
        if settings.ct_window_high_hu <= settings.ct_window_low_hu or settings.suv_window_high <= 0:
            raise ValueError(f"empty intensity window in {settings}")
        self.reader = reader
        self.settings = settings

    def buffer(self, batch_size: int) -> np.ndarray:
        """A batch buffer (B, C, E, E, E) float32 to reuse across calls."""
        edge = self.settings.crop_edge_vox
        return np.empty((batch_size, self.settings.n_channels, edge, edge, edge), dtype=np.float32)

    def station(self, scan: int, name: str) -> StationInfo:
        """Attributes of station `name` in scan `scan`; KeyError naming the file when it has no such station."""
        info = self.reader.infos[scan]
        if name not in info.stations:
            raise KeyError(f"{info.path}: no station {name!r} in the fused labels; present: "
                           f"{', '.join(info.stations) or 'none'}")
        return info.stations[name]

    def pairs(self) -> list[tuple[int, str]]:
        """Every (scan id, station name) present in the reader's files."""
        return [(i, name) for i, info in enumerate(self.reader.infos) for name in info.stations]

    def draw(self, scans: Sequence[int], stations: Sequence[str], rng: np.random.Generator) -> np.ndarray:
        """Crop centres (B, 3) int64 (z, y, x) of (scans[b], stations[b]), drawn in order from the weight maps."""
        if len(scans) != len(stations):
            raise ValueError(f"{len(scans)} scans but {len(stations)} stations")
        centres = np.empty((len(scans), 3), dtype=np.int64)
        for b, (scan_id, name) in enumerate(zip(scans, stations, strict=True)):
            scan = self.reader.scan(scan_id)
            flat = int(draw_centres(*scan.table(name), 1, rng)[0])
            _, height, width = scan.info.grid.shape_zyx
            centres[b] = (flat // (height * width), flat // width % height, flat % width)
        return centres

    def centroids(self, scans: Sequence[int], stations: Sequence[str]) -> np.ndarray:
        """Crop centres (B, 3) int64 (z, y, x): the stations' centroids (the deterministic inference patch)."""
        if len(scans) != len(stations):
            raise ValueError(f"{len(scans)} scans but {len(stations)} stations")
        return np.array([centroid_centre(self.station(i, s)) for i, s in zip(scans, stations, strict=True)],
                        dtype=np.int64).reshape(-1, 3)

    def fill(self, scans: Sequence[int], stations: Sequence[str], centres: np.ndarray, out: np.ndarray | None = None,
             slots: np.ndarray | None = None, pool: Executor | None = None, parts: int = 1) -> PatchBatch:
        """Crops of (scans[b], stations[b]) centred on centres[b], written into out[slots[b]] (default out[b]).

        With a thread `pool`, the crops are cut in `parts` chunks at once: the kernels release the GIL, so the
        threads run on as many cores. Files are opened here, in the calling thread (the reader is not
        thread-safe), and the jobs hold them until cut: a batch of more scans than the reader's `max_open` makes
        it let go of earlier ones, which close only when the batch is done. `image` of the result is `out[:B]`,
        or all of `out` when `slots` are given.
        """
        n = len(scans)
        targets = np.arange(n) if slots is None else np.asarray(slots, dtype=np.int64)
        out = self.buffer(n) if out is None else out
        if (len(targets) != n or out.shape[1:] != self.buffer(0).shape[1:] or out.dtype != np.float32
                or (n and not 0 <= targets.min() <= targets.max() < out.shape[0])):
            raise ValueError(f"out buffer {out.shape} {out.dtype} does not fit {n} patches of "
                             f"{self.buffer(0).shape[1:]} float32 at slots up to {targets.max() if n else 0}")
        codes = np.array([self.station(i, s).code for i, s in zip(scans, stations, strict=True)], dtype=np.int64)
        jobs = [(self.reader.scan(i), centres[b], out[targets[b]], int(codes[b])) for b, i in enumerate(scans)]

        def cut(chunk: Sequence[tuple]) -> None:
            for scan, centre, target, code in chunk:
                read_crop(scan, centre, self.settings, target, code)

        if pool is None or parts <= 1 or n < 2:
            cut(jobs)
        else:
            bounds = np.linspace(0, n, min(parts, n) + 1).astype(int)
            for future in [pool.submit(cut, jobs[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]:
                future.result()
        image = out[:n] if slots is None else out
        return PatchBatch(image, np.asarray(centres, dtype=np.int64), np.asarray(scans, dtype=np.int64), codes)

    def sample(self, scans: Sequence[int], stations: Sequence[str], rng: np.random.Generator,
               out: np.ndarray | None = None) -> PatchBatch:
        """Patches of (scans[b], stations[b]), centres drawn from the stations' weight maps."""
        return self.fill(scans, stations, self.draw(scans, stations, rng), out)

    def centroid(self, scans: Sequence[int], stations: Sequence[str], out: np.ndarray | None = None) -> PatchBatch:
        """Patches centred on the stations' centroids (the deterministic inference patch)."""
        return self.fill(scans, stations, self.centroids(scans, stations), out)
