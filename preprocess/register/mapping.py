"""`map_stations`: every atlas of the bank registered to one scan in one batch, station labels warped and fused.

Order: structure channels -> closed-form centroid fit per atlas ('initial') -> batched affine refinement
('linear') -> batched variational registration ('deformable') -> per atlas, the station one-hot channels
warped through affine o (id + u) in one interpolation, argmax, then the majority vote over atlases.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cache.grid import Grid
from cache.stations import stations
from preprocess.register.atlas_bank import AtlasBank
from preprocess.register.channels import (
    CENTROID_STRUCTURES,
    group_labels,
    one_hot,
    present_groups,
    windowed_ct,
)
from preprocess.register.fusion import StationMap, VoteAccumulator
from preprocess.register.linear import (
    RegistrationError,
    physical_to_fixed_frame,
    refine_affine,
    robust_fit,
    structure_centroids,
)
from preprocess.register.qa import dice_scores, qa_record
from preprocess.register.settings import RegistrationSettings
from preprocess.register.variational import jacobian_determinant, register_deformable
from preprocess.register.warp import (
    index_to_normalised,
    level_shape,
    level_spacing_mm,
    pool_to,
    resize_field,
    warp_labels,
)


def resolve_device(device: str = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; 'cuda' without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RegistrationError("device 'cuda' requested but torch sees no CUDA device; use --device cpu or auto")
    if device not in ("cpu", "cuda"):
        raise RegistrationError(f"device must be auto, cpu or cuda, got {device!r}")
    return torch.device(device)


def isotropic_spacing(grid: Grid, what: str) -> float:
    spacing = grid.spacing_mm
    if max(spacing) - min(spacing) > 1e-3 * max(spacing):
        raise RegistrationError(f"{what}: registration needs an isotropic grid, got spacing {spacing} mm; "
                                "resample with preprocess.resample.resample_to_spacing first")
    return float(spacing[0])


def _union(*names: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(n for group in names for n in group))


def _padded(arrays: list[np.ndarray], shape: tuple[int, ...], fill: float, dtype) -> np.ndarray:
    out = np.full((len(arrays), *shape), fill, dtype=dtype)
    for i, a in enumerate(arrays):
        out[(i, *(slice(0, n) for n in a.shape))] = a
    return out


def _to_atlas_mm(matrices: np.ndarray, padded_shape: tuple[int, ...], spacing_mm: float) -> np.ndarray:
    """(N, 4, 4): fixed frame mm -> atlas frame mm (for Jacobians), from frame -> grid_sample matrices."""
    back = np.diag([spacing_mm] * 3 + [1.0]) @ np.linalg.inv(index_to_normalised(padded_shape))
    return back @ matrices


def map_stations(ct_hu: np.ndarray, structures: np.ndarray, grid: Grid, bank: AtlasBank,
                 settings: RegistrationSettings, device: str = "auto") -> StationMap:
    """Fused station labels of one scan (cache grid, isotropic) from all atlases of `bank`.

    `ct_hu` and `structures` (TotalSegmentator v2 ids) are (z, y, x) arrays on `grid`; the bank must have been
    loaded at the same spacing (`load_atlas_bank`).
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    dev = resolve_device(device)
    spacing = isotropic_spacing(grid, "scan")
    if abs(bank.spacing_mm - spacing) > 1e-3 * spacing:
        raise RegistrationError(f"atlas bank {bank.path} was loaded at {bank.spacing_mm} mm, the scan is at "
                                f"{spacing} mm; load the bank with the scans' spacing_mm")
    if structures.shape != grid.shape_zyx or ct_hu.shape != grid.shape_zyx:
        raise RegistrationError(f"ct_hu {ct_hu.shape} and structures {structures.shape} must have the grid's "
                                f"shape {grid.shape_zyx}")
    atlases = bank.atlases
    groups = _union(settings.linear_channels, settings.deformable_channels)
    n_groups = len(groups)
    padded = tuple(max(a.structures.shape[i] for a in atlases) for i in range(3))

    fixed_labels = group_labels(structures, groups)
    moving_labels = _padded([group_labels(a.structures, groups) for a in atlases], padded, 0, np.uint8)
    valid = np.stack([present_groups(m, n_groups, settings.init_min_voxels) for m in moving_labels])
    valid &= present_groups(fixed_labels, n_groups, settings.init_min_voxels)[None]
    fixed = one_hot(torch.from_numpy(fixed_labels).to(dev), n_groups).unsqueeze(0)
    moving = torch.stack([one_hot(torch.from_numpy(m).to(dev), n_groups) for m in moving_labels])
    weights = torch.from_numpy(valid.astype(np.float32)).to(dev)
    timings["channels"] = time.perf_counter() - start

    tick = time.perf_counter()
    fixed_centroids = structure_centroids(structures, grid, CENTROID_STRUCTURES, settings.init_min_voxels)
    to_normalised = index_to_normalised(padded)
    initial = []
    for atlas in atlases:
        fit = robust_fit(fixed_centroids, structure_centroids(atlas.structures, atlas.grid, CENTROID_STRUCTURES,
                                                              settings.init_min_voxels),
                         settings.init_transform, settings.init_outlier_mm, f"atlas {atlas.name}")
        initial.append(physical_to_fixed_frame(grid, atlas.grid, fit.matrix, to_normalised))
    matrices = {"initial": torch.as_tensor(np.stack(initial), dtype=torch.float32, device=dev)}
    timings["initial"] = time.perf_counter() - tick

    tick = time.perf_counter()
    linear = [groups.index(g) for g in settings.linear_channels]
    matrices["linear"] = refine_affine(fixed[:, linear], moving[:, linear], weights[:, linear],
                                       matrices["initial"], spacing, settings)
    timings["linear"] = time.perf_counter() - tick

    tick = time.perf_counter()
    deformable = [groups.index(g) for g in settings.deformable_channels]
    fixed_d, moving_d, weights_d = fixed[:, deformable], moving[:, deformable], weights[:, deformable]
    if settings.use_ct_channel:
        low, high = settings.ct_window_low_hu, settings.ct_window_high_hu
        fixed_ct = windowed_ct(ct_hu, low, high).to(dev)[None, None]
        moving_ct = windowed_ct(_padded([a.ct_hu for a in atlases], padded, low, np.float32), low, high)
        fixed_d = torch.cat([fixed_d, fixed_ct], dim=1)
        moving_d = torch.cat([moving_d, moving_ct.to(dev).unsqueeze(1)], dim=1)
        weights_d = torch.cat([weights_d, torch.ones(len(atlases), 1, device=dev)], dim=1)
    result = register_deformable(fixed_d, moving_d, weights_d, matrices["linear"], spacing, settings)
    timings["deformable"] = time.perf_counter() - tick

    tick = time.perf_counter()
    del moving, moving_d, fixed_d
    station_map = _warp_and_fuse(grid, spacing, padded, atlases, fixed, moving_labels, groups, valid, matrices,
                                 result.field_mm, timings, settings, dev)
    timings["warp_fuse_qa"] = time.perf_counter() - tick
    timings["total"] = time.perf_counter() - start
    return station_map


def _warp_and_fuse(grid, spacing, padded, atlases, fixed, moving_labels, groups, valid, matrices, field_mm,
                   timings, settings, dev) -> StationMap:
    """Per atlas: station channels warped through the final transform onto the scan grid, and QA per stage on the
    grid of the finest deformable level (the same as the scan's unless that level is coarser); then the vote."""
    n_stations = len(stations())
    shape = grid.shape_zyx
    votes = VoteAccumulator(n_stations, shape, dev)
    qa_shape = level_shape(shape, spacing, settings.deformable_levels_mm[-1])
    qa_spacing = level_spacing_mm(shape, qa_shape, spacing)
    pooled = pool_to(fixed, qa_shape)
    fixed_qa = torch.cat([(1.0 - pooled.sum(1, keepdim=True)).clamp_min(0.0), pooled], 1).argmax(1).reshape(-1)
    records = []
    to_mm = {stage: _to_atlas_mm(m.double().cpu().numpy(), padded, spacing) for stage, m in matrices.items()}
    for n, atlas in enumerate(atlases):
        station_labels = _padded([atlas.stations], padded, 0, np.uint8)[0]
        votes.add(warp_labels(station_labels, n_stations, matrices["linear"][n:n + 1], shape, spacing,
                              field_mm[n:n + 1], dev))
        if not settings.qa:
            continue
        for stage in ("initial", "linear", "deformable"):
            field = resize_field(field_mm[n:n + 1], qa_shape) if stage == "deformable" else None
            matrix = matrices["linear" if stage == "deformable" else stage][n:n + 1]
            warped = warp_labels(moving_labels[n], len(groups), matrix, shape, spacing, field, dev, qa_shape)
            dice = dice_scores(fixed_qa, warped.argmax(1), len(groups)).cpu().numpy()
            determinant = float(np.linalg.det(to_mm["linear" if stage == "deformable" else stage][n][:3, :3]))
            jacobian = (jacobian_determinant(field, qa_spacing) * determinant if stage == "deformable"
                        else determinant)
            records.append(qa_record(atlas.name, stage, groups, dice, valid[n], jacobian, timings[stage]))
    labels, counts = votes.fused()
    return StationMap(labels=labels, votes=counts, n_atlases=len(atlases), qa=records, timings_s=timings)
