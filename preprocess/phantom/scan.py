"""One simulated scan (a patient, or an atlas subject): anatomy, nodes, tumour, CT, PET and TotalSegmentator masks.

All arrays are (z, y, x) on the CT grid, except the SUV volume, which lies on the coarser PET grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cache.grid import Grid
from cache.stations import station
from preprocess.phantom.anatomy import PART, PARTS, SOFT_PARTS, draw_template
from preprocess.phantom.ct import HILUM_HU, NECROSIS_HU, PART_HU, ct_image
from preprocess.phantom.deformation import canonical_coordinates, draw_deformation, warp_labels
from preprocess.phantom.dicom_pet import PetAcquisition, decode_slices, draw_acquisition, encode_slices
from preprocess.phantom.labels import StageLabels
from preprocess.phantom.nodes import BenignUptake, Node, Tumour, place_nodes, place_tumour
from preprocess.phantom.pet import PetPhysics, draw_pet_physics, part_suv, pet_grid, pet_on_ct_grid, scanner
from preprocess.phantom.settings import PhantomSettings
from preprocess.totalseg_labels import label_ids

TUMOUR_HU = 40.0
BROWN_FAT_STATIONS = ("1R", "1L", "2R", "2L")


def _totalseg_lookup() -> np.ndarray:
    ids = label_ids("v2")
    return np.array([ids[p.totalseg] if p.totalseg else 0 for p in PARTS], dtype=np.uint8)


PART_TOTALSEG = _totalseg_lookup()


@dataclass(frozen=True)
class SimulatedScan:
    grid: Grid
    ct_hu: np.ndarray  # int16
    totalseg: np.ndarray  # uint8, TotalSegmentator v2 ids
    stations: np.ndarray  # uint8, true station codes 1..17
    nodes: tuple[Node, ...]
    labels: StageLabels | None  # None for atlas subjects
    lesions: np.ndarray | None  # uint8 1 = primary tumour or malignant node
    pet_grid: Grid | None
    suv: np.ndarray | None  # float32 on pet_grid
    node_suv_max: tuple[float, ...]
    acquisition: PetAcquisition | None
    pet_dicom: tuple[np.ndarray, np.ndarray] | None  # stored int16 slices and their slopes
    tumour: Tumour | None
    benign_uptake: BenignUptake  # the patient's latent cause of hot benign nodes


def template_spacing_for(spacing_mm: float) -> float:
    """Resolution of the canonical template: about half the CT voxel, between 1 and 2 mm."""
    return float(np.clip(spacing_mm / 2.0, 1.0, 2.0))


def _paint_lesions(grid: Grid, parts: np.ndarray, hu: np.ndarray, activity: np.ndarray, nodes: tuple[Node, ...],
                   tumour: Tumour | None) -> tuple[np.ndarray, np.ndarray]:
    """Paint tumour and nodes into HU and activity; return node id map (uint16) and lesion mask."""
    soft = np.isin(parts, SOFT_PARTS)
    node_ids = np.zeros(grid.shape_zyx, dtype=np.uint16)
    lesions = np.zeros(grid.shape_zyx, dtype=np.uint8)
    if tumour is not None:
        for lobe in tumour.lobes:
            box, inside = lobe.rasterise(grid)
            inside = inside & soft[box]
            hu[box][inside], activity[box][inside], lesions[box][inside] = TUMOUR_HU, tumour.uptake_suv, 1
        if tumour.necrotic:
            box, inside = tumour.lobes[0].rasterise(grid, scale=0.45)
            inside = inside & (lesions[box] > 0)
            hu[box][inside], activity[box][inside] = NECROSIS_HU, 0.6
    for node in nodes:
        box, inside = node.blob.rasterise(grid)
        inside = inside & soft[box]
        hu[box][inside], activity[box][inside], node_ids[box][inside] = node.hu, node.uptake_suv, node.node_id
        if node.malignant:
            lesions[box][inside] = 1
        inner = None
        if node.fatty_hilum:
            long_axis = int(np.argmax(node.blob.semi_axes_mm))
            offset = node.blob.rotation[:, long_axis] * 0.45 * node.blob.semi_axes_mm[long_axis]
            inner = (node.blob.rasterise(grid, scale=0.5, offset_mm=offset), HILUM_HU, 0.4)
        elif node.necrotic:
            inner = (node.blob.rasterise(grid, scale=0.5), NECROSIS_HU, 0.15 * node.uptake_suv)
        if inner is not None:
            (ibox, iinside), inner_hu, inner_suv = inner
            iinside = iinside & (node_ids[ibox] == node.node_id)
            hu[ibox][iinside], activity[ibox][iinside] = inner_hu, inner_suv
    return node_ids, lesions


def _paint_brown_fat(rng: np.random.Generator, parts: np.ndarray, stations: np.ndarray, node_ids: np.ndarray,
                     hu: np.ndarray, activity: np.ndarray, suv: float) -> None:
    """Patchy active brown fat in the fat of the supraclavicular and upper paratracheal stations."""
    codes = [station(name).code for name in BROWN_FAT_STATIONS]
    region = np.isin(stations, codes) & (parts == PART["mediastinal_fat"]) & (node_ids == 0)
    patches = ndimage.gaussian_filter(rng.standard_normal(parts.shape, dtype=np.float32), sigma=2.0)
    region &= patches > np.quantile(patches, 0.6)
    hu[region], activity[region] = -60.0, suv


def _node_peaks(suv: np.ndarray, node_ids: np.ndarray, count: int) -> tuple[float, ...]:
    """SUVmax of nodes 1..count over their voxels (0 for a node left without voxels), in one pass over the
    node voxels instead of a sort of the whole volume."""
    peaks = np.zeros(count + 1, dtype=np.float32)
    inside = node_ids > 0
    np.maximum.at(peaks, node_ids[inside], suv[inside])
    return tuple(float(v) for v in peaks[1:])


def simulate_scan(rng: np.random.Generator, grid: Grid, labels: StageLabels | None, pet_factor: int = 2,
                  dicom_pet: bool = False, day: int = 0, settings: PhantomSettings | None = None) -> SimulatedScan:
    """Draw one subject on `grid`: a patient with `labels` (tumour, malignant nodes, PET), or with None an atlas
    subject (CT and masks, benign nodes only). Node uptake follows `settings` (the defaults when None)."""
    settings = settings or PhantomSettings()
    template = draw_template(template_spacing_for(grid.spacing_mm[0]))
    coords = canonical_coordinates(grid, draw_deformation(rng, grid))
    parts = warp_labels(template.parts, template.canvas, coords)
    stations = warp_labels(template.stations, template.canvas, coords)
    del coords
    patient = labels is not None
    placed, benign_uptake = place_nodes(rng, stations, grid, labels.positive if labels else (), settings)
    nodes = tuple(placed)
    tumour = None
    if patient:
        side = "right" if labels.tumor_side == "R" else "left"
        lung = np.isin(parts, [PART[p.name] for p in PARTS if p.name.startswith("lung_") and p.name.endswith(side)])
        tumour = place_tumour(rng, lung, grid)
    physics: PetPhysics = draw_pet_physics(rng)
    hu = PART_HU[parts]
    activity = part_suv(physics)[parts]
    node_ids, lesions = _paint_lesions(grid, parts, hu, activity, nodes, tumour)
    if physics.brown_fat_suv > 0:
        _paint_brown_fat(rng, parts, stations, node_ids, hu, activity, physics.brown_fat_suv)
    totalseg = PART_TOTALSEG[parts]
    totalseg[node_ids > 0] = 0
    ct = ct_image(hu, grid.spacing_mm[0], rng, noise_hu=float(rng.uniform(8.0, 16.0)))
    if not patient:
        return SimulatedScan(grid, ct, totalseg, stations, nodes, None, None, None, None, (), None, None, None,
                             benign_uptake)
    suv = scanner(activity, grid.spacing_mm[0], pet_factor, physics, rng)
    acquisition = draw_acquisition(rng, day)
    pet_dicom = None
    if dicom_pet:
        pet_dicom = encode_slices(suv, acquisition)
        suv = decode_slices(*pet_dicom, acquisition)
    fine = pet_on_ct_grid(suv, pet_factor, grid.shape_zyx)
    node_max = _node_peaks(fine, node_ids, len(nodes))
    return SimulatedScan(grid, ct, totalseg, stations, nodes, labels, lesions, pet_grid(grid, pet_factor), suv,
                         node_max, acquisition, pet_dicom, tumour, benign_uptake)
