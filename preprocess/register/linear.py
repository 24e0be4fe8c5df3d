"""Linear stage: a closed-form fit to paired structure centroids, then an affine refined by soft Dice (or SSD).

The centroid fit works in physical mm (LPS), so atlases with another origin or axis direction need no
special case. Structures cut by the crop border are left out of the pairing while enough others remain: a cut
structure's centroid moves with the crop, not with the anatomy. Remaining outliers (a mislabelled rib, a
collapsed lobe) are dropped worst first until every residual is below `init_outlier_mm`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cache.grid import Grid
from preprocess.register.channels import LabelChannels, level_channels
from preprocess.register.warp import level_points_mm, level_shape, sampling_grid, warp
from preprocess.totalseg_labels import label_ids

MIN_PAIRS = {"translation": 1, "similarity": 3, "affine": 4}


class RegistrationError(RuntimeError):
    """An atlas that cannot be registered to a scan (e.g. no structure in common)."""


@dataclass(frozen=True)
class Centroids:
    """Physical centroids (mm, x y z) of the structures of one image, and whether each touches the border."""

    names: tuple[str, ...]
    points_mm: np.ndarray
    cut: np.ndarray


@dataclass(frozen=True)
class PointFit:
    """A fitted physical transform (4x4, fixed mm -> moving mm) and which pairs it kept."""

    matrix: np.ndarray
    names: tuple[str, ...]
    kept: np.ndarray
    residual_mm: np.ndarray


def structure_centroids(structures: np.ndarray, grid: Grid, names: tuple[str, ...], min_voxels: int) -> Centroids:
    """Centroids of the named structures with at least `min_voxels` voxels, from a (z, y, x) v2 label array."""
    ids = label_ids("v2")
    labels = np.asarray(structures).astype(np.int64, copy=False)
    n_labels = max(int(labels.max(initial=0)), max(ids.values())) + 1
    flat = labels.ravel()
    counts = np.bincount(flat, minlength=n_labels)
    coords = np.indices(labels.shape, dtype=np.float64).reshape(3, -1)
    sums = np.stack([np.bincount(flat, weights=c, minlength=n_labels) for c in coords], axis=1)
    faces = [labels[0], labels[-1], labels[:, 0], labels[:, -1], labels[:, :, 0], labels[:, :, -1]]
    on_border = np.zeros(n_labels, dtype=bool)
    on_border[np.unique(np.concatenate([f.ravel() for f in faces]))] = True
    chosen = [n for n in names if counts[ids[n]] >= min_voxels]
    index = np.array([ids[n] for n in chosen], dtype=np.int64)
    mean_zyx = sums[index] / np.maximum(counts[index], 1)[:, None]
    points = grid.index_to_physical(mean_zyx) if len(chosen) else np.zeros((0, 3))
    return Centroids(tuple(chosen), points, on_border[index])


def fit_points(source: np.ndarray, target: np.ndarray, model: str) -> np.ndarray:
    """4x4 least-squares transform mapping `source` (K, 3) onto `target` (K, 3): translation, similarity, affine."""
    mean_s, mean_t = source.mean(0), target.mean(0)
    s, t = source - mean_s, target - mean_t
    linear = np.eye(3)
    if model == "similarity":
        u, sigma, vt = np.linalg.svd(t.T @ s / len(s))
        sign = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt)) or 1.0])
        rotation = u @ sign @ vt
        variance = (s**2).sum() / len(s)
        scale = np.trace(np.diag(sigma) @ sign) / variance if variance > 0 else 1.0
        linear = scale * rotation
    elif model == "affine":
        linear = np.linalg.lstsq(s, t, rcond=None)[0].T
    matrix = np.eye(4)
    matrix[:3, :3] = linear
    matrix[:3, 3] = mean_t - linear @ mean_s
    return matrix


def robust_fit(fixed: Centroids, moving: Centroids, model: str, outlier_mm: float, what: str) -> PointFit:
    """Fit `model` to the centroid pairs of both images, dropping cut structures and outliers (worst first)."""
    common = [n for n in fixed.names if n in moving.names]
    f_index = {n: i for i, n in enumerate(fixed.names)}
    m_index = {n: i for i, n in enumerate(moving.names)}
    whole = [n for n in common if not fixed.cut[f_index[n]] and not moving.cut[m_index[n]]]
    names = whole if len(whole) >= max(MIN_PAIRS[model], 6) else common
    if len(names) < MIN_PAIRS[model]:
        if len(names) == 0:
            raise RegistrationError(f"{what}: no TotalSegmentator structure in common with the scan, cannot align; "
                                    "check that both label images are TotalSegmentator v2 'total' masks")
        model = "translation"
    source = np.array([fixed.points_mm[f_index[n]] for n in names])
    target = np.array([moving.points_mm[m_index[n]] for n in names])
    kept = np.ones(len(names), dtype=bool)
    while True:
        matrix = fit_points(source[kept], target[kept], model)
        residual = np.linalg.norm(source @ matrix[:3, :3].T + matrix[:3, 3] - target, axis=1)
        worst = int(np.argmax(np.where(kept, residual, -1.0)))
        if residual[worst] <= outlier_mm or kept.sum() <= max(MIN_PAIRS[model] + 1, len(names) // 2):
            return PointFit(matrix, tuple(names), kept, residual)
        kept[worst] = False


def physical_to_fixed_frame(fixed_grid: Grid, moving_grid: Grid, physical: np.ndarray,
                            index_to_normalised: np.ndarray) -> np.ndarray:
    """4x4: fixed frame (mm along the scan's z, y, x) -> moving grid_sample coordinates, via a physical transform."""
    flip = np.eye(4)[[2, 1, 0, 3]]
    fixed_index_to_physical = np.eye(4)
    fixed_index_to_physical[:3, :3] = fixed_grid.direction_matrix @ np.diag(fixed_grid.spacing_mm) @ flip[:3, :3]
    fixed_index_to_physical[:3, 3] = fixed_grid.origin_mm
    frame_to_index = np.diag([1.0 / fixed_grid.spacing_mm[0]] * 3 + [1.0])
    moving_physical_to_index = np.eye(4)
    moving_physical_to_index[:3, :3] = (
        flip[:3, :3] @ np.diag(1.0 / np.asarray(moving_grid.spacing_mm)) @ np.linalg.inv(moving_grid.direction_matrix)
    )
    moving_physical_to_index[:3, 3] = -moving_physical_to_index[:3, :3] @ np.asarray(moving_grid.origin_mm)
    return index_to_normalised @ moving_physical_to_index @ physical @ fixed_index_to_physical @ frame_to_index


def _correction(params: torch.Tensor, centre_mm: torch.Tensor, translation_scale_mm: float) -> torch.Tensor:
    """(N, 4, 4) affine about the fixed centre from (N, 12) parameters (zero = identity)."""
    n = params.shape[0]
    linear = torch.eye(3, device=params.device) + params[:, :9].view(n, 3, 3)
    offset = centre_mm - torch.einsum("nij,j->ni", linear, centre_mm) + params[:, 9:] * translation_scale_mm
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0], device=params.device).expand(n, 1, 4)
    return torch.cat([torch.cat([linear, offset.unsqueeze(-1)], dim=2), bottom], dim=1)


def alignment_loss(fixed: torch.Tensor, warped: torch.Tensor, weights: torch.Tensor, metric: str) -> torch.Tensor:
    """(N,) loss per atlas: 1 - weighted mean soft Dice over channels, or weighted mean squared difference."""
    dims = (2, 3, 4)
    if metric == "soft_dice":
        overlap = (fixed * warped).sum(dims)
        dice = 2.0 * overlap / (fixed.sum(dims) + warped.sum(dims) + 1e-3)
        return 1.0 - (weights * dice).sum(1) / weights.sum(1).clamp_min(1e-6)
    return (weights * ((fixed - warped) ** 2).mean(dims)).sum(1) / weights.sum(1).clamp_min(1e-6)


def refine_affine(fixed: torch.Tensor | LabelChannels, moving: torch.Tensor | LabelChannels, weights: torch.Tensor,
                  matrices: torch.Tensor, spacing_mm: float, settings) -> torch.Tensor:
    """(N, 4, 4) matrices after multi-resolution affine refinement of all atlases at once (Adam).

    `fixed` (1, C, z, y, x) and `moving` (N, C, ...) are full-resolution channels (tensors, or `LabelChannels` that
    make each level's channels from label arrays); `weights` (N, C) switch off
    channels missing in either image. Each atlas's loss depends on its own parameters only, so the batch gives
    the same answer as one atlas at a time.
    """
    full = tuple(fixed.shape[2:])
    device = fixed.device
    centre = torch.tensor([(n - 1) * spacing_mm / 2 for n in full], device=device)
    params = torch.zeros(matrices.shape[0], 12, device=device, requires_grad=True)
    optimiser = torch.optim.Adam([params], lr=settings.linear_learning_rate)
    for level_mm, iterations in zip(settings.linear_levels_mm, settings.linear_iterations, strict=True):
        shape = level_shape(full, spacing_mm, level_mm)
        fixed_level = level_channels(fixed, shape)
        moving_level = level_channels(moving, level_shape(tuple(moving.shape[2:]), spacing_mm, level_mm))
        points = level_points_mm(full, shape, spacing_mm, device)
        for _ in range(iterations):
            optimiser.zero_grad()
            current = matrices @ _correction(params, centre, settings.linear_translation_scale_mm)
            warped = warp(moving_level, sampling_grid(points, current))
            loss = alignment_loss(fixed_level, warped, weights, settings.linear_metric).sum()
            loss.backward()
            optimiser.step()
    with torch.no_grad():
        return matrices @ _correction(params, centre, settings.linear_translation_scale_mm)
