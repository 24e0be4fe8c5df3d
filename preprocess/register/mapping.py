"""`map_stations`: the atlases of the bank registered to one scan in batches, station labels warped and fused.

Order, per batch of atlases: closed-form centroid fit per atlas ('initial') -> batched affine refinement
('linear') -> batched variational registration ('deformable') -> per atlas, the station one-hot channels
warped through affine o (id + u) in one interpolation, argmax, added to the majority vote. Atlases do not
interact (each has its own parameters, stop rules and field), so any batch size gives the same fused labels; the
batch size is chosen from the memory available (`preprocess.register.memory`), all atlases at once where they fit.
"""

from __future__ import annotations

import time

import numpy as np
import torch

from cache.devices import resolve_device
from cache.grid import Grid
from cache.heap import reused_heap
from cache.stations import stations
from preprocess.register.atlas_bank import AtlasBank
from preprocess.register.channels import (
    CENTROID_STRUCTURES,
    LabelChannels,
    group_labels,
    present_groups,
    windowed_ct,
)
from preprocess.register.fusion import AtlasLabelKeeper, StationMap, VoteAccumulator
from preprocess.register.linear import (
    RegistrationError,
    physical_to_fixed_frame,
    refine_affine,
    robust_fit,
    structure_centroids,
)
from preprocess.register.memory import (
    GIB,
    choose_atlas_batch,
    estimate_registration,
    registration_budget,
)
from preprocess.register.qa import QaTarget, dice_scores, qa_record
from preprocess.register.settings import RegistrationSettings
from preprocess.register.variational import jacobian_determinant, register_deformable
from preprocess.register.warp import (
    index_to_normalised,
    level_shape,
    level_spacing_mm,
    resize_field,
    warp_labels,
    warp_labels_argmax,
)
from preprocess.step_timing import timing


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
                 settings: RegistrationSettings, device: str = "auto", atlas_batch: str | int = "auto",
                 memory_budget_gb: float = 0.0, name: str = "scan", keep_atlas_labels: bool = False) -> StationMap:
    """Fused station labels of one scan (cache grid, isotropic) from all atlases of `bank`.

    `ct_hu` and `structures` (TotalSegmentator v2 ids) are (z, y, x) arrays on `grid`; the bank must have been
    loaded at the same spacing (`load_atlas_bank`). `atlas_batch`: atlases registered at once, or "auto" (as
    many as fit the device's free memory, on CPU up to `memory.CPU_BATCH_VOXELS`); `memory_budget_gb` (> 0)
    limits the estimate, which on CPU counts the whole process (scan, bank, libraries); `name` names the scan in
    errors. A scan whose estimate does not fit with one atlas at a time raises `MemoryBudgetError` up front.
    `keep_atlas_labels`: also return each atlas' own labels after the linear and the deformable stage, and the
    linear stage's fused vote (for leave-one-atlas-out scoring, `preprocess.register.validate`).
    """
    start = time.perf_counter()
    timings: dict[str, float] = {}
    dev = resolve_device(device)
    spacing = isotropic_spacing(grid, name)
    if abs(bank.spacing_mm - spacing) > 1e-3 * spacing:
        raise RegistrationError(f"atlas bank {bank.path} was loaded at {bank.spacing_mm} mm, {name} is at "
                                f"{spacing} mm; load the bank with the scans' spacing_mm")
    if structures.shape != grid.shape_zyx or ct_hu.shape != grid.shape_zyx:
        raise RegistrationError(f"{name}: ct_hu {ct_hu.shape} and structures {structures.shape} must have the "
                                f"grid's shape {grid.shape_zyx}")
    atlases = bank.atlases
    groups = _union(settings.linear_channels, settings.deformable_channels)
    padded = tuple(max(a.structures.shape[i] for a in atlases) for i in range(3))
    held = ct_hu.nbytes + structures.nbytes + sum(a.ct_hu.nbytes + a.structures.nbytes + a.stations.nbytes
                                                  for a in atlases)
    estimate = estimate_registration(grid.shape_zyx, padded, spacing, settings, dev.type, held)
    budget = registration_budget(dev, memory_budget_gb)
    crop = "x".join(str(n) for n in grid.shape_zyx)
    batch = choose_atlas_batch(estimate, len(atlases), atlas_batch, budget,
                               f"{name} (crop {crop} voxels at {spacing:g} mm, {len(atlases)} atlases)", dev.type)

    with timing(timings, "channels"):
        fixed_labels = group_labels(structures, groups)
        fixed_valid = present_groups(fixed_labels, len(groups), settings.init_min_voxels)
        fixed_ct = (windowed_ct(ct_hu, settings.ct_window_low_hu, settings.ct_window_high_hu).to(dev)[None]
                    if settings.use_ct_channel else None)
        fixed = LabelChannels(torch.from_numpy(fixed_labels).to(dev)[None], tuple(range(1, len(groups) + 1)))
        fixed_qa = _qa_target(structures, groups, grid.shape_zyx, spacing, settings, dev)
    with timing(timings, "initial"):
        fixed_centroids = structure_centroids(structures, grid, CENTROID_STRUCTURES, settings.init_min_voxels)
    votes = VoteAccumulator(len(stations()), grid.shape_zyx, dev)
    records: list[dict] = []
    kept = AtlasLabelKeeper(len(stations()), grid.shape_zyx, dev) if keep_atlas_labels else None
    with reused_heap():  # the big buffers of each iteration and atlas reuse freed memory, not fresh pages
        for first in range(0, len(atlases), batch):
            chunk = atlases[first:first + batch]
            records += _register_batch(chunk, groups, padded, fixed, fixed_ct, fixed_valid, fixed_centroids,
                                       fixed_qa, votes, grid, spacing, settings, dev, timings, kept)
    labels, counts = votes.fused()
    timings["total"] = time.perf_counter() - start
    memory = {"estimate_gib": estimate.peak_bytes(batch) / GIB, "budget_gib": budget / GIB, "atlas_batch": batch}
    return StationMap(labels=labels, votes=counts, n_atlases=len(atlases), qa=records, timings_s=timings,
                      memory=memory, atlas_labels=tuple(kept.atlases) if kept else (),
                      linear_labels=kept.linear_votes.fused()[0] if kept else None)


def _qa_target(structures: np.ndarray, groups: tuple[str, ...], shape: tuple[int, ...], spacing: float,
               settings: RegistrationSettings, device: torch.device) -> QaTarget:
    """The scan's structure groups for the QA, those that drive the registration then the held-out ones, as flat
    labels on the QA grid (the finest deformable level): the labels themselves on the full grid (argmax of exact
    one-hot channels), else the argmax of the pooled channels."""
    qa_groups = groups + settings.qa_held_out_channels
    labels = group_labels(structures, qa_groups)
    valid = present_groups(labels, len(qa_groups), settings.init_min_voxels)
    qa_shape = level_shape(shape, spacing, settings.deformable_levels_mm[-1])
    if tuple(qa_shape) == tuple(shape):
        return QaTarget(torch.from_numpy(labels).to(device).reshape(-1), valid, qa_groups)
    pooled = LabelChannels(torch.from_numpy(labels).to(device)[None], tuple(range(1, len(qa_groups) + 1))).level(
        qa_shape)
    flat = torch.cat([(1.0 - pooled.sum(1, keepdim=True)).clamp_min(0.0), pooled], 1).argmax(1).reshape(-1)
    return QaTarget(flat, valid, qa_groups)


def _moving_qa_labels(chunk, moving_labels: np.ndarray, valid: np.ndarray, padded: tuple[int, ...],
                      target: QaTarget, settings: RegistrationSettings) -> tuple[np.ndarray, np.ndarray]:
    """The atlases' structure groups for the QA (those of `target`) and which of them are in atlas and scan; the
    registration's own labels when no group is held out."""
    if len(target.groups) == valid.shape[1]:
        return moving_labels, valid
    labels = _padded([group_labels(a.structures, target.groups) for a in chunk], padded, 0, np.uint8)
    present = np.stack([present_groups(m, len(target.groups), settings.init_min_voxels) for m in labels])
    return labels, present & target.valid[None]


def _register_batch(chunk, groups, padded, fixed, fixed_ct, fixed_valid, fixed_centroids, fixed_qa, votes, grid,
                    spacing, settings, dev, timings, kept=None) -> list[dict]:
    """Register one batch of atlases to the scan and add their warped stations to `votes`; their QA records."""
    stage_seconds: dict[str, float] = {}
    with timing(stage_seconds, "channels"):
        moving_labels = _padded([group_labels(a.structures, groups) for a in chunk], padded, 0, np.uint8)
        valid = np.stack([present_groups(m, len(groups), settings.init_min_voxels) for m in moving_labels])
        valid &= fixed_valid[None]
        weights = torch.from_numpy(valid.astype(np.float32)).to(dev)
        moving_ct = None
        if settings.use_ct_channel:
            low, high = settings.ct_window_low_hu, settings.ct_window_high_hu
            moving_ct = windowed_ct(_padded([a.ct_hu for a in chunk], padded, low, np.float32), low, high).to(dev)
        moving = LabelChannels(torch.from_numpy(moving_labels).to(dev), fixed.codes, moving_ct)
    with timing(stage_seconds, "initial"):
        to_normalised = index_to_normalised(padded)
        initial = []
        for atlas in chunk:
            fit = robust_fit(fixed_centroids, structure_centroids(atlas.structures, atlas.grid, CENTROID_STRUCTURES,
                                                                  settings.init_min_voxels),
                             settings.init_transform, settings.init_outlier_mm, f"atlas {atlas.name}")
            initial.append(physical_to_fixed_frame(grid, atlas.grid, fit.matrix, to_normalised))
        matrices = {"initial": torch.as_tensor(np.stack(initial), dtype=torch.float32, device=dev)}
    with timing(stage_seconds, "linear"):
        linear = [groups.index(g) for g in settings.linear_channels]
        matrices["linear"] = refine_affine(fixed.select(linear), moving.select(linear), weights[:, linear],
                                           matrices["initial"], spacing, settings)
    with timing(stage_seconds, "deformable"):
        deformable = [groups.index(g) for g in settings.deformable_channels]
        weights_d = weights[:, deformable]
        if settings.use_ct_channel:
            weights_d = torch.cat([weights_d, torch.ones(len(chunk), 1, device=dev)], dim=1)
        fixed_d = LabelChannels(fixed.labels, tuple(fixed.codes[c] for c in deformable), fixed_ct)
        moving_d = LabelChannels(moving.labels, tuple(moving.codes[c] for c in deformable), moving_ct)
        result = register_deformable(fixed_d, moving_d, weights_d, matrices["linear"], spacing, settings)
    del moving, moving_d, moving_ct
    with timing(stage_seconds, "warp_fuse_qa"):
        qa_labels, qa_valid = _moving_qa_labels(chunk, moving_labels, valid, padded, fixed_qa, settings)
        records = _warp_and_fuse(grid, spacing, padded, chunk, fixed_qa, qa_labels, qa_valid, matrices,
                                 result.field_mm, stage_seconds, votes, settings, dev, kept)
    for step, seconds in stage_seconds.items():
        timings[step] = timings.get(step, 0.0) + seconds
    return records


def _warp_and_fuse(grid, spacing, padded, atlases, fixed_qa, moving_labels, valid, matrices, field_mm,
                   stage_seconds, votes, settings, dev, kept=None) -> list[dict]:
    """Per atlas of a batch: station channels warped through the final transform onto the scan grid and added to
    `votes`, and QA per stage on the grid of the finest deformable level (the same as the scan's unless that
    level is coarser); returns the QA records. With a `kept`, each atlas' own labels are kept there too."""
    n_stations = len(stations())
    shape = grid.shape_zyx
    qa_shape = level_shape(shape, spacing, settings.deformable_levels_mm[-1])
    qa_spacing = level_spacing_mm(shape, qa_shape, spacing)
    records = []
    to_mm = {stage: _to_atlas_mm(m.double().cpu().numpy(), padded, spacing) for stage, m in matrices.items()}
    for n, atlas in enumerate(atlases):
        station_labels = _padded([atlas.stations], padded, 0, np.uint8)[0]
        own = votes.add(warp_labels(station_labels, n_stations, matrices["linear"][n:n + 1], shape, spacing,
                                    field_mm[n:n + 1], dev))
        if kept is not None:
            kept.add(atlas.name, warp_labels(station_labels, n_stations, matrices["linear"][n:n + 1], shape,
                                             spacing, None, dev), own)
        if not settings.qa:
            continue
        for stage in ("initial", "linear", "deformable"):
            field = resize_field(field_mm[n:n + 1], qa_shape) if stage == "deformable" else None
            matrix = matrices["linear" if stage == "deformable" else stage][n:n + 1]
            n_groups = len(fixed_qa.groups)
            warped = warp_labels_argmax(moving_labels[n], n_groups, matrix, shape, spacing, field, dev, qa_shape)
            dice = dice_scores(fixed_qa.labels, warped, n_groups).cpu().numpy()
            del warped
            determinant = float(np.linalg.det(to_mm["linear" if stage == "deformable" else stage][n][:3, :3]))
            jacobian = (jacobian_determinant(field, qa_spacing) * determinant if stage == "deformable"
                        else determinant)
            records.append(qa_record(atlas.name, stage, fixed_qa.groups, dice, valid[n], jacobian,
                                     stage_seconds[stage], settings.qa_held_out_channels))
    return records
