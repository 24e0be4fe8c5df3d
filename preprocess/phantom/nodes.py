"""Lymph nodes and the primary tumour, drawn in the patient's own frame (sizes in true millimetres).

Benign nodes are small and oval, many with a fatty hilum. Whether some of them are hot is a property of the
patient, not of the station: a latent benign-uptake state (none, mildly reactive, granulomatous) decides how many
stations carry an enlarged hot benign node and how hot, preferring the hilar and subcarinal stations, so hot
benign nodes cluster in some patients as in real cohorts. Malignant nodes are larger and rounder, some necrotic,
with uptake that grows with size, so after scanner blur small ones fade. Centres lie inside their true station, a
few mm from its border where the station allows, so that rater-to-rater jitter of the atlas delineations rarely
moves them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cache.grid import Grid
from cache.stations import station_by_code
from preprocess.phantom.deformation import rotation_matrix
from preprocess.phantom.settings import PhantomSettings

Box = tuple[slice, slice, slice]
HILAR_STATIONS = frozenset({"7", "10R", "10L", "11R", "11L"})
NODE_MARGIN_MM = 5.0
# No node centre this close to the cranial or caudal face of the field of view: an atlas's labels end at its own
# field of view, so a node in the last slices may find no label after registration.
FIELD_EDGE_MARGIN_MM = 10.0
BENIGN_STATES = ("none", "mild", "granulomatous")
# Where hot benign nodes sit (relative weights): hilar and subcarinal first (granulomatous disease, anthracosis,
# drainage of inflamed lung), lower paratracheal next, upper paratracheal, prevascular and low cervical least.
HOT_BENIGN_WEIGHTS = {
    "1R": 0.15, "1L": 0.15, "2R": 0.3, "2L": 0.3, "3A": 0.2, "3P": 0.2, "4R": 1.0, "4L": 0.9, "5": 0.5, "6": 0.3,
    "7": 2.0, "8": 0.4, "9": 0.3, "10R": 2.0, "10L": 1.8, "11R": 2.2, "11L": 2.0,
}
REACTIVE_ENLARGEMENT = 1.4  # hot benign nodes are enlarged
# Uptake of the metastases of a low-avid tumour (mucinous or lepidic adenocarcinoma, small-volume disease) relative
# to the others: after blur they stay near the background, false negatives for any SUVmax threshold. Avidity is
# the tumour's, so it holds for all of a patient's malignant nodes.
LOW_AVID_FACTOR = 0.1
HOT_SUV_SPREAD = 0.25  # lognormal sigma of the tissue SUV of hot benign nodes around their state's median


@dataclass(frozen=True)
class BenignUptake:
    """A patient's cause of benign uptake: its state, the stations that hold a hot benign node, their SUV median."""

    state: str
    hot_stations: frozenset[str]
    hot_suv: float


def draw_benign_uptake(rng: np.random.Generator, present: list[str], positive: tuple[str, ...],
                       settings: PhantomSettings) -> BenignUptake:
    """The patient's benign-uptake state and, for a reactive one, which benign stations of `present` run hot."""
    fractions = settings.benign_state_fractions_node_positive if positive else settings.benign_state_fractions
    state = BENIGN_STATES[int(rng.choice(3, p=np.asarray(fractions)))]
    if state == "none":
        return BenignUptake(state, frozenset(), 0.0)
    mean = settings.mild_hot_stations if state == "mild" else settings.granulomatous_hot_stations
    benign = [name for name in present if name not in positive]
    count = min(1 + int(rng.poisson(max(mean - 1.0, 0.0))), len(benign))
    weights = np.array([HOT_BENIGN_WEIGHTS[name] for name in benign])
    hot = rng.choice(benign, size=count, replace=False, p=weights / weights.sum()) if count else []
    suv = settings.mild_hot_suv if state == "mild" else settings.granulomatous_hot_suv
    return BenignUptake(state, frozenset(str(name) for name in hot), suv)


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
    reactive: bool = False  # a hot benign node (the patient's benign-uptake state put it there)

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


def _malignant_uptake(rng: np.random.Generator, short_mm: float, settings: PhantomSettings, low_avid: bool) -> float:
    """Tissue SUV of a malignant node: grows with size, spread lognormally, far lower in a low-avid patient."""
    uptake = settings.malignant_suv_at_10mm * (2.5 + 0.45 * short_mm) / 7.0 * rng.lognormal(0.0, 0.35)
    return float(uptake * (LOW_AVID_FACTOR if low_avid else 1.0))


def _candidate_centres(stations: np.ndarray, spacing: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per station present in `stations`: its voxel indices (n, 3) and their distance (mm) to its border."""
    found = ndimage.find_objects(stations, max_label=17)
    candidates = {}
    for code, extent in enumerate(found, start=1):
        if extent is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in extent)
        mask = stations[box] == code
        distance = ndimage.distance_transform_edt(mask, sampling=spacing[::-1])
        candidates[station_by_code(code).name] = (np.argwhere(mask) + [s.start for s in box], distance[mask])
    return candidates


def _node_pool(index: np.ndarray, distance: np.ndarray, grid: Grid) -> np.ndarray:
    """Voxels (n, 3) where a node of the station may be centred: a few mm from the station's border where the
    station allows, and away from the cranial and caudal faces of the field of view where it reaches them."""
    edge = int(np.ceil(FIELD_EDGE_MARGIN_MM / grid.spacing_mm[2]))
    away = (index[:, 0] >= edge) & (index[:, 0] < grid.shape_zyx[0] - edge)
    if away.any():
        index, distance = index[away], distance[away]
    margin = min(NODE_MARGIN_MM, 0.6 * float(distance.max()))
    return index[distance >= margin]


def place_nodes(rng: np.random.Generator, stations: np.ndarray, grid: Grid, positive: tuple[str, ...],
                settings: PhantomSettings) -> tuple[list[Node], BenignUptake]:
    """Benign nodes in most stations (hot ones where the patient's benign uptake says), 1-3 malignant nodes in
    every positive station; also the benign uptake drawn.

    Raises RuntimeError when a positive station is missing from the field of view (the anatomy variation is
    bounded so that it never should be).
    """
    spacing = np.asarray(grid.spacing_mm)
    candidates = _candidate_centres(stations, spacing)
    missing = [name for name in positive if name not in candidates]
    if missing:
        raise RuntimeError(f"positive station {missing[0]} has no voxel in the field of view")
    uptake = draw_benign_uptake(rng, list(candidates), positive, settings)
    low_avid = rng.random() < settings.malignant_low_uptake_fraction
    nodes: list[Node] = []
    for name, (index, distance) in candidates.items():
        hot = name in uptake.hot_stations
        n_malignant = 1 + int(rng.poisson(0.5)) if name in positive else 0
        n_benign = max(int(rng.poisson(1.2 if name in HILAR_STATIONS else 0.8)), int(hot))
        pool = _node_pool(index, distance, grid)
        placed: list[np.ndarray] = []
        for k, malignant in enumerate([True] * n_malignant + [False] * n_benign):
            reactive = hot and k == n_malignant  # the station's first benign node is its hot one
            semi, hilum, necrotic = _node_shape(rng, malignant)
            if reactive:  # enlarged, the fatty hilum effaced by the reactive tissue
                semi, hilum = semi * REACTIVE_ENLARGEMENT, False
            centre = None
            for _ in range(25):
                candidate = grid.index_to_physical(pool[rng.integers(len(pool))])
                if all(np.linalg.norm(candidate - c) >= semi[0] + 3.0 for c in placed):
                    centre = candidate
                    break
            if centre is None and (malignant or reactive):
                centre = grid.index_to_physical(pool[rng.integers(len(pool))])
            if centre is None:
                continue
            placed.append(centre)
            if malignant:
                suv = _malignant_uptake(rng, 2.0 * float(semi.min()), settings, low_avid)
            elif reactive:
                suv = float(rng.lognormal(np.log(uptake.hot_suv), HOT_SUV_SPREAD))
            else:
                suv = float(rng.uniform(0.9, 1.6))
            hu = float(rng.normal(42.0 if malignant else 35.0, 8.0))
            blob = Blob(centre, semi, _random_rotation(rng))
            nodes.append(Node(len(nodes) + 1, name, malignant, blob, hilum, necrotic, suv, hu, reactive))
    return nodes, uptake


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
