"""Deformable stage: variational registration after Werner et al. (ITK VariationalRegistration), batched over atlases.

Per iteration: warp the moving channels through M (q + u(q)), compute the force (demons, SSD or local NCC, summed
over channels with per-atlas channel weights), update u <- R(u + tau * f) with the diffusive regulariser
R = (I - tau*alpha*Laplacian)^-1 (exact, by DCT) or a Gaussian. Diffeomorphic mode, `velocity` update: the same
update acts on a velocity field v and the displacement is exp(v) by scaling and squaring (every iteration);
`compositive` update (as ITK's DiffeomorphicDemons): u <- R(u o exp(tau * f)), where exp of the small update needs
one or two squarings. Three levels coarse to fine; a level
ends for an atlas when its metric made no new minimum for a while or its fitted slope flattened; finished
atlases keep their field while the others go on, so a batch equals its atlases run one by one. Each level hands
on, per atlas, the field of its lowest metric (a level that starts to drift is not allowed to spoil the result).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import torch.nn.functional as F

from preprocess.register.channels import LabelChannels, level_channels, level_channels_last
from preprocess.register.regulariser import diffusive_denominator, diffusive_solve, gaussian_smooth
from preprocess.register.warp import (
    compose,
    level_shape,
    level_spacing_mm,
    resize_field,
    warp_channels_last,
    warp_through,
)


@dataclass(frozen=True)
class DeformableResult:
    """Displacement (N, 3, z, y, x) in mm on the full fixed grid; per level and atlas the iterations run and the
    best metric."""

    field_mm: torch.Tensor
    iterations: list[list[int]]
    metric: list[list[float]]


def _gradient(images: torch.Tensor, spacing_mm: tuple[float, ...]) -> tuple[torch.Tensor, ...]:
    """Central differences (one-sided at the edges) of (N, C, z, y, x) images, per mm, along z, y, x."""
    return tuple(torch.gradient(images, spacing=spacing_mm[i], dim=2 + i)[0] for i in range(3))


def _box_mean(x: torch.Tensor, radius: int) -> torch.Tensor:
    return F.avg_pool3d(x, 2 * radius + 1, stride=1, padding=radius, count_include_pad=False)


GRADIENT_MODES = {"symmetric": 0, "fixed": 1, "moving": 2}


def demons_force_torch(fixed, warped, fixed_grad, weights, spacing_mm, settings,
                       ssd: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Force (N, 3, z, y, x) in mm and metric (N,) (weighted mean squared difference) of demons, or SSD when `ssd`.

    Tensor code (CUDA), one channel at a time so that its buffers are a few fields per atlas, not several copies
    of every channel; `fixed_grad` (from `_gradient(fixed)`) or None (each channel's gradient is then taken as it
    is needed). On CPU `demons_force_channels_last` computes the same in one numba pass.
    """
    normaliser = sum(h * h for h in spacing_mm) / 3.0
    n, n_channels = warped.shape[:2]
    numerator = torch.zeros(n, 3, *warped.shape[2:], dtype=warped.dtype, device=warped.device)
    gradient_norm = torch.zeros(n, *warped.shape[2:], dtype=warped.dtype, device=warped.device)
    squared = torch.zeros_like(gradient_norm)
    for c in range(n_channels):
        if not bool((weights[:, c] != 0).any()):
            continue
        w = weights[:, c].view(n, 1, 1, 1)
        diff = fixed[:, c] - warped[:, c]
        if settings.force_gradient == "moving":
            grads = _gradient(warped[:, c:c + 1], spacing_mm)
        else:
            fixed_c = (tuple(g[:, c:c + 1] for g in fixed_grad) if fixed_grad is not None
                       else _gradient(fixed[:, c:c + 1], spacing_mm))
            grads = fixed_c if settings.force_gradient == "fixed" else tuple(
                0.5 * (a + b) for a, b in zip(fixed_c, _gradient(warped[:, c:c + 1], spacing_mm), strict=True))
        weighted = w * diff
        for i, g in enumerate(grads):
            numerator[:, i] += weighted * g[:, 0]
            gradient_norm += w * g[:, 0] * g[:, 0]
        squared += weighted * diff
        del diff, grads, weighted
    metric = squared.mean((1, 2, 3)) / weights.sum(1).clamp_min(1e-6)
    if ssd:
        return numerator, metric
    denominator = gradient_norm.add_(squared, alpha=1.0 / normaliser)
    force = numerator.div_(denominator.clamp_min(1e-9).unsqueeze(1))
    return force.masked_fill_((denominator <= 1e-9).unsqueeze(1), 0.0), metric


def demons_force_channels_last(fixed: np.ndarray, warped: np.ndarray, weights: torch.Tensor,
                               spacing_mm: tuple[float, ...], settings,
                               ssd: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """`demons_force_torch` by the numba kernel, on channels-last arrays fixed (1, z, y, x, C) and warped
    (N, z, y, x, C)."""
    from preprocess.register.kernels import demons_force_kernel

    n, nz, ny, nx, _ = warped.shape
    force = np.empty((n, 3, nz, ny, nx), dtype=np.float32)
    squared = np.empty((n, nz), dtype=np.float64)
    w = np.ascontiguousarray(weights.cpu().numpy(), dtype=np.float32)
    normaliser = sum(h * h for h in spacing_mm) / 3.0
    demons_force_kernel(fixed, warped, w, np.asarray(spacing_mm, dtype=np.float64), float(normaliser),
                        GRADIENT_MODES[settings.force_gradient], ssd, force, squared)
    metric = squared.sum(1) / (nz * ny * nx) / np.maximum(w.sum(1), 1e-6)
    return torch.from_numpy(force), torch.from_numpy(metric.astype(np.float32))


def ncc_force(fixed, warped, weights, spacing_mm, settings) -> tuple[torch.Tensor, torch.Tensor]:
    """Force (N, 3, ...) ascending local squared NCC, and metric (N,) = 1 - mean local squared NCC."""
    r = settings.ncc_radius_vox
    n, c = warped.shape[:2]
    fixed = fixed.expand(n, -1, -1, -1, -1)
    f, m = fixed.reshape(n * c, 1, *fixed.shape[2:]), warped.reshape(n * c, 1, *warped.shape[2:])
    mean_f, mean_m = _box_mean(f, r), _box_mean(m, r)
    cross = _box_mean(f * m, r) - mean_f * mean_m
    var_f = (_box_mean(f * f, r) - mean_f**2).clamp_min(1e-5)
    var_m = (_box_mean(m * m, r) - mean_m**2).clamp_min(1e-5)
    ncc = (cross * cross / (var_f * var_m)).reshape(n, c, *warped.shape[2:])
    slope = (2.0 * cross / (var_f * var_m) * ((f - mean_f) - cross / var_m * (m - mean_m))).reshape(warped.shape)
    w = weights.view(n, c, 1, 1, 1)
    grads = _gradient(warped, spacing_mm)
    force = torch.stack([(w * slope * g).sum(1) for g in grads], dim=1)
    # the NCC gradient has no natural length: scale each atlas' force so its longest step is half a voxel
    peak = force.norm(dim=1).flatten(1).amax(1).clamp_min(1e-12)
    force = force * (0.5 * min(spacing_mm) / peak).view(-1, 1, 1, 1, 1)
    metric = 1.0 - (w * ncc).mean((2, 3, 4)).sum(1) / weights.sum(1).clamp_min(1e-6)
    return force, metric


@dataclass(frozen=True)
class Force:
    """A force term's two implementations, each returning force (N, 3, z, y, x) in mm and metric (N,).

    `cpu(fixed, fixed_cl, warped_cl, weights, spacing_mm, settings)` takes the CPU path's channels-last arrays
    (numba kernels); `cuda(fixed, warped, fixed_grad, weights, spacing_mm, settings)` takes tensors. `fixed` is the
    channel-first tensor, which the CPU path keeps only when `cpu_reads_fixed`.
    """

    cpu: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    cuda: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    cpu_reads_fixed: bool = False


def _demons_cpu(fixed, fixed_cl, warped_cl, weights, spacing_mm, settings, ssd: bool = False):
    return demons_force_channels_last(fixed_cl, warped_cl, weights, spacing_mm, settings, ssd)


def _ncc_cpu(fixed, fixed_cl, warped_cl, weights, spacing_mm, settings):
    return ncc_force(fixed, torch.from_numpy(warped_cl).permute(0, 4, 1, 2, 3), weights, spacing_mm, settings)


def _ncc_cuda(fixed, warped, fixed_grad, weights, spacing_mm, settings):
    return ncc_force(fixed, warped, weights, spacing_mm, settings)


# The force terms by their `RegistrationSettings.force` name; a new force is an entry here (and in the Literal).
FORCES = {
    "demons": Force(cpu=_demons_cpu, cuda=demons_force_torch),
    "ssd": Force(cpu=partial(_demons_cpu, ssd=True), cuda=partial(demons_force_torch, ssd=True)),
    "ncc": Force(cpu=_ncc_cpu, cuda=_ncc_cuda, cpu_reads_fixed=True),
}


def exponential(velocity_mm: torch.Tensor, full_shape: tuple[int, ...], spacing_mm: float,
                level_spacing: tuple[float, ...]) -> torch.Tensor:
    """Displacement exp(v) by scaling and squaring, with per atlas enough squarings for steps under half a voxel."""
    peak = velocity_mm.norm(dim=1).flatten(1).amax(1) / min(level_spacing)
    steps = torch.ceil(torch.log2((peak / 0.5).clamp_min(1.0))).long()
    field = velocity_mm / (2.0 ** steps.to(velocity_mm.dtype)).view(-1, 1, 1, 1, 1)
    for k in range(int(steps.max().item()) if len(steps) else 0):
        squared = compose(field, field, full_shape, spacing_mm)
        field = torch.where((k < steps).view(-1, 1, 1, 1, 1), squared, field)
    return field


def _stopped(history: list[torch.Tensor], settings) -> torch.Tensor:
    """(N,) bool: atlases whose level should stop by the no-new-minimum or the line-fit rule."""
    values = torch.stack(history)  # (iterations, N)
    done = torch.zeros(values.shape[1], dtype=torch.bool, device=values.device)
    window = settings.stop_no_new_minimum_iterations
    if window and len(history) > window:
        done |= values[-window:].amin(0) >= values[:-window].amin(0)
    window = settings.stop_line_fit_iterations
    if window and len(history) >= window:
        recent = values[-window:] / values[0].abs().clamp_min(1e-12)
        t = torch.arange(window, dtype=values.dtype, device=values.device)
        t = t - t.mean()
        slope = (t.unsqueeze(1) * (recent - recent.mean(0))).sum(0) / (t * t).sum()
        done |= slope > -settings.stop_line_fit_slope
    return done


def _select(mask: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per atlas `a` where `mask` else `b`, without copying when the mask is uniform."""
    if bool(mask.all()):
        return a
    if not bool(mask.any()):
        return b
    return torch.where(mask.view(-1, 1, 1, 1, 1), a, b)


def register_deformable(fixed: torch.Tensor | LabelChannels, moving: torch.Tensor | LabelChannels,
                        weights: torch.Tensor, matrices: torch.Tensor, spacing_mm: float, settings) -> DeformableResult:
    """Displacement fields (N, 3, z, y, x), mm, that align each atlas (through its matrix) to the fixed image.

    `fixed` (1, C, z, y, x) and `moving` (N, C, ...) are full-resolution channels (moving padded to one shape),
    as tensors or as `LabelChannels` that make each level's channels from label arrays; `weights` (N, C) the
    channel weights per atlas, `matrices` (N, 4, 4) the linear result. Buffers of an iteration are freed or
    reused before the next one allocates its own, so the finest level holds one warped image and about four
    fields per atlas.
    """
    full = tuple(fixed.shape[2:])
    device = fixed.device
    n = moving.shape[0]
    on_cpu = device.type == "cpu"
    field = None
    all_iterations, all_metrics = [], []
    for level_mm, max_iterations in zip(settings.deformable_levels_mm, settings.deformable_iterations, strict=True):
        shape = level_shape(full, spacing_mm, level_mm)
        spacing = level_spacing_mm(full, shape, spacing_mm)
        moving_shape = level_shape(tuple(moving.shape[2:]), spacing_mm, level_mm)
        fixed_level = moving_level = fixed_cl = moving_cl = None
        if on_cpu:  # the CPU kernels read channels-last arrays; NCC also reads the channel-first fixed ones
            fixed_cl, moving_cl = level_channels_last(fixed, shape), level_channels_last(moving, moving_shape, True)
            if FORCES[settings.force].cpu_reads_fixed:
                fixed_level = level_channels(fixed, shape)
        else:
            fixed_level, moving_level = level_channels(fixed, shape), level_channels(moving, moving_shape)
        field = torch.zeros(n, 3, *shape, device=device) if field is None else resize_field(field, shape)
        fixed_grad = None  # CUDA: each channel's gradient is taken when the force needs it (no 3 x C copies)
        tau_alpha_mm2 = settings.time_step * settings.diffusive_alpha_vox2 * min(spacing) ** 2
        denominator = diffusive_denominator(shape, spacing, tau_alpha_mm2, device)
        active = torch.ones(n, dtype=torch.bool, device=device)
        done_at = torch.full((n,), max_iterations, dtype=torch.long)
        history: list[torch.Tensor] = []
        best_metric = torch.full((n,), float("inf"), device=device)
        best_field = field
        for iteration in range(max_iterations):
            velocity = settings.diffeomorphic and settings.diffeomorphic_update == "velocity"
            displacement = exponential(field, full, spacing_mm, spacing) if velocity else field
            force, metric = _force(fixed_level, moving_level, fixed_cl, moving_cl, fixed_grad, weights, matrices,
                                   full, shape, spacing_mm, spacing, displacement, settings)
            del displacement
            history.append(metric)
            improved = (metric < best_metric) & active
            best_metric = torch.where(improved, metric, best_metric)
            best_field = _select(improved, field, best_field)
            stop = _stopped(history, settings) & active
            done_at[stop.cpu()] = iteration
            active = active & ~stop
            if not bool(active.any()):
                break
            if settings.diffeomorphic and settings.diffeomorphic_update == "compositive":
                step = exponential(settings.time_step * force, full, spacing_mm, spacing)
                updated = compose(step, field, full, spacing_mm)
                del step
            else:
                updated = force.mul_(settings.time_step).add_(field)  # u + tau * f, in the force's memory
            del force
            if settings.regulariser == "diffusive":
                updated = diffusive_solve(updated, denominator, overwrite_rhs=True)
            else:
                updated = gaussian_smooth(updated, settings.gaussian_sigma_mm, spacing)
            field = _select(active, updated, field)
            del updated
        field = best_field
        del best_field, fixed_level, moving_level, fixed_cl, moving_cl, fixed_grad
        all_iterations.append(done_at.tolist())
        all_metrics.append(best_metric.tolist())
    if settings.diffeomorphic and settings.diffeomorphic_update == "velocity":
        field = exponential(field, full, spacing_mm, spacing)
    return DeformableResult(resize_field(field, full), all_iterations, all_metrics)


def _force(fixed_level, moving_level, fixed_cl, moving_cl, fixed_grad, weights, matrices, full, shape, spacing_mm,
           spacing, displacement, settings) -> tuple[torch.Tensor, torch.Tensor]:
    """Force and metric of one iteration: moving warped through M (q + u(q)), then the force term of
    `FORCES`; the warped image is dropped on return (CPU: channels-last kernels; CUDA: tensors)."""
    force = FORCES[settings.force]
    if moving_cl is not None:
        warped_cl = warp_channels_last(moving_cl, matrices, full, shape, spacing_mm, displacement)
        return force.cpu(fixed_level, fixed_cl, warped_cl, weights, spacing, settings)
    warped = warp_through(moving_level, matrices, full, shape, spacing_mm, displacement)
    return force.cuda(fixed_level, warped, fixed_grad, weights, spacing, settings)


def jacobian_determinant(field_mm: torch.Tensor, spacing_mm: tuple[float, ...]) -> torch.Tensor:
    """(N, z, y, x) determinant of the Jacobian of x -> x + u(x) for a (N, 3, z, y, x) field in mm."""
    rows = []
    for i in range(3):
        grads = torch.gradient(field_mm[:, i], spacing=list(spacing_mm), dim=(1, 2, 3))
        rows.append([grads[j] + (1.0 if i == j else 0.0) for j in range(3)])
    a, b, c = rows
    return (a[0] * (b[1] * c[2] - b[2] * c[1]) - a[1] * (b[0] * c[2] - b[2] * c[0])
            + a[2] * (b[0] * c[1] - b[1] * c[0]))
