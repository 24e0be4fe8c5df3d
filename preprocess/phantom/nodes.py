"""Lymph nodes and the primary tumour, drawn in the patient's own frame (sizes in true millimetres).

Benign nodes are small and oval, many with a fatty hilum, some reactive with raised uptake (more often at the
hilum and below the carina). Malignant nodes are larger and rounder, some necrotic, with uptake that grows with
size, so after scanner blur small ones fade. Centres lie inside their true station, a few mm from its border
where the station allows, so that rater-to-rater jitter of the atlas delineations rarely moves them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cache.grid import Grid
from cache.stations import station_by_code
from preprocess.phantom.deformation import rotation_matrix

Box = tuple[slice, slice, slice]
HILAR_STATIONS = frozenset({"7", "10R", "10L", "11R", "11L"})
NODE_MARGIN_MM = 5.0


@dataclass(frozen=True)
class Blob:
    """An oriented ellipsoid: centre (x, y, z) mm physical, semi-axes mm, rotation (columns = its axes)."""

    centre_mm: np.ndarray
    semi_axes_mm: np.ndarray
    rotation: np.ndarray

    def rasterise(self, grid: Grid, scale: float = 1.0, offset_mm: np.ndarray | None = None) -> tuple[Box, np.ndarray]:
        """Box slices and boolean mask of the ellipsoid (semi-axes times `scale`) on `grid` (identity direction)."""
        centre = self.centre_mm + (0.0 if offset_mm is None else offset_mm)
        semi = self.semi_axes_mm * scale
        reach = float(semi.max())
        lo = np.floor((centre - reach - grid.origin_mm) / grid.spacing_mm).astype(int)
        hi = np.ceil((centre + reach - grid.origin_mm) / grid.spacing_mm).astype(int) + 1
        shape_xyz = np.asarray(grid.shape_zyx[::-1])
        lo, hi = np.clip(lo, 0, shape_xyz), np.clip(hi, 0, shape_xyz)
        box = tuple(slice(int(lo[a]), int(hi[a])) for a in (2, 1, 0))
        axes = [grid.origin_mm[a] + grid.spacing_mm[a] * np.arange(lo[a], hi[a]) - centre[a] for a in range(3)]
        x, y, z = axes[0][None, None, :], axes[1][None, :, None], axes[2][:, None, None]
        total = 0.0
        for k in range(3):  # coordinate along the ellipsoid's k-th axis
            u = self.rotation[0, k] * x + self.rotation[1, k] * y + self.rotation[2, k] * z
            total = total + (u / semi[k]) ** 2
        return box, total <= 1.0


@dataclass(frozen=True)
class Node:
    node_id: int
    station: str
    malignant: bool
    blob: Blob
    fatty_hilum: bool
    necrotic: bool
    uptake_suv: float  # activity of the node tissue before blur, in SUV
    hu: float

    @property
    def short_axis_mm(self) -> float:
        return float(2.0 * self.blob.semi_axes_mm.min())

    @property
    def long_axis_mm(self) -> float:
        return float(2.0 * self.blob.semi_axes_mm.max())


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    return rotation_matrix(rng.uniform(-np.pi, np.pi, size=3))


def _node_shape(rng: np.random.Generator, malignant: bool) -> tuple[np.ndarray, bool, bool]:
    """Semi-axes (short, middle, long) mm, fatty hilum, necrosis."""
    if malignant:
        short = float(np.clip(rng.lognormal(np.log(10.0), 0.4), 5.0, 28.0))
        ratios = (1.0, rng.uniform(1.0, 1.15), rng.uniform(1.0, 1.35))
        hilum, necrotic = rng.random() < 0.05, short >= 12.0 and rng.random() < 0.45
    else:
        short = float(np.clip(rng.lognormal(np.log(6.0), 0.3), 3.0, 13.0))
        ratios = (1.0, rng.uniform(1.0, 1.3), rng.uniform(1.4, 2.2))
        hilum, necrotic = short >= 5.0 and rng.random() < 0.55, False
    return short / 2.0 * np.asarray(ratios), bool(hilum), bool(necrotic)


def _node_uptake(rng: np.random.Generator, malignant: bool, short_mm: float, reactive: bool) -> float:
    if malignant:
        uptake = (2.5 + 0.45 * short_mm) * rng.lognormal(0.0, 0.35)
        return float(uptake * (0.5 if rng.random() < 0.3 else 1.0))
    return float(rng.lognormal(np.log(4.5), 0.4) if reactive else rng.uniform(0.9, 1.6))


def _candidate_centres(stations: np.ndarray, code: int, spacing: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel indices (n, 3) of the station and their distance (mm) to its border."""
    found = ndimage.find_objects((stations == code).astype(np.uint8))
    if not found or found[0] is None:
        return np.zeros((0, 3), int), np.zeros(0)
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in found[0])
    mask = stations[box] == code
    distance = ndimage.distance_transform_edt(mask, sampling=spacing[::-1])
    index = np.argwhere(mask)
    return index + [s.start for s in box], distance[mask]


def place_nodes(rng: np.random.Generator, stations: np.ndarray, grid: Grid, positive: tuple[str, ...]) -> list[Node]:
    """Benign nodes in most stations and 1-3 malignant nodes in every positive station.

    Raises RuntimeError when a positive station is missing from the field of view (the anatomy variation is
    bounded so that it never should be).
    """
    spacing = np.asarray(grid.spacing_mm)
    nodes: list[Node] = []
    for code in range(1, 18):
        name = station_by_code(code).name
        index, distance = _candidate_centres(stations, code, spacing)
        if len(index) == 0:
            if name in positive:
                raise RuntimeError(f"positive station {name} has no voxel in the field of view")
            continue
        n_malignant = 1 + int(rng.poisson(0.5)) if name in positive else 0
        n_benign = int(rng.poisson(1.2 if name in HILAR_STATIONS else 0.8))
        margin = min(NODE_MARGIN_MM, 0.6 * float(distance.max()))
        pool = index[distance >= margin]
        placed: list[np.ndarray] = []
        for malignant in [True] * n_malignant + [False] * n_benign:
            semi, hilum, necrotic = _node_shape(rng, malignant)
            reactive = not malignant and rng.random() < (0.5 if name in HILAR_STATIONS else 0.25)
            if reactive:  # reactive nodes are enlarged
                semi = semi * 1.4
            centre = None
            for _ in range(25):
                candidate = grid.index_to_physical(pool[rng.integers(len(pool))])
                if all(np.linalg.norm(candidate - c) >= semi[0] + 3.0 for c in placed):
                    centre = candidate
                    break
            if centre is None and malignant:
                centre = grid.index_to_physical(pool[rng.integers(len(pool))])
            if centre is None:
                continue
            placed.append(centre)
            uptake = _node_uptake(rng, malignant, 2.0 * float(semi.min()), reactive)
            hu = float(rng.normal(42.0 if malignant else 35.0, 8.0))
            blob = Blob(centre, semi, _random_rotation(rng))
            nodes.append(Node(len(nodes) + 1, name, malignant, blob, hilum, necrotic, uptake, hu))
    return nodes


@dataclass(frozen=True)
class Tumour:
    lobes: tuple[Blob, ...]
    uptake_suv: float
    necrotic: bool

    @property
    def centre_mm(self) -> np.ndarray:
        return self.lobes[0].centre_mm


def place_tumour(rng: np.random.Generator, lung_side: np.ndarray, grid: Grid) -> Tumour:
    """A lobulated primary tumour (15-55 mm) inside the lung of the tumour side."""
    diameter = float(rng.uniform(15.0, 55.0))
    stride = 2
    distance = ndimage.distance_transform_edt(lung_side[::stride, ::stride, ::stride],
                                              sampling=np.asarray(grid.spacing_mm)[::-1] * stride)
    ok = np.argwhere(distance >= min(diameter / 2.5, 0.8 * float(distance.max())))
    centre = grid.index_to_physical(ok[rng.integers(len(ok))] * stride)
    lobes = [Blob(centre, diameter / 2.0 * rng.uniform(0.75, 1.0, size=3), _random_rotation(rng))]
    for _ in range(int(rng.integers(1, 4))):
        offset = rng.normal(0.0, diameter / 5.0, size=3)
        lobes.append(Blob(centre + offset, diameter / 3.0 * rng.uniform(0.6, 1.0, size=3), _random_rotation(rng)))
    return Tumour(tuple(lobes), float(rng.lognormal(np.log(8.0), 0.35)), diameter > 35.0 and rng.random() < 0.6)
