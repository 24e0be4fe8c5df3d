"""Geometry of the registration: sampling grids, warping by `grid_sample`, field resizing and composition.

Frames: the *fixed frame* is the scan's voxel grid scaled to mm, `q = index * spacing_mm`, axes (z, y, x).
A transform per atlas is a 4x4 matrix from the fixed frame to the atlas' `grid_sample` coordinates (z, y, x,
in [-1, 1] over the padded atlas tensor, `align_corners=False`), optionally after a displacement field `u` in mm
(N, 3, z, y, x) on a (possibly coarser) level of the fixed grid: atlas point = M (q + u(q)). With
`align_corners=False`, [-1, 1] spans the outer faces of the volume at every resolution, so one matrix serves all
pyramid levels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F


def level_shape(full_shape: tuple[int, ...], spacing_mm: float, level_mm: float) -> tuple[int, int, int]:
    """Shape of the pyramid level of `level_mm` (0 or <= spacing: the full grid), at least 2 voxels per axis."""
    if level_mm <= spacing_mm:
        return tuple(int(n) for n in full_shape)
    return tuple(max(int(round(n * spacing_mm / level_mm)), 2) for n in full_shape)


def level_spacing_mm(full_shape: tuple[int, ...], shape: tuple[int, ...], spacing_mm: float) -> tuple[float, ...]:
    """Per-axis spacing (z, y, x) in mm of a level that covers the same box as the full grid."""
    return tuple(spacing_mm * n / m for n, m in zip(full_shape, shape, strict=True))


def level_points_mm(
    full_shape: tuple[int, ...], shape: tuple[int, ...], spacing_mm: float, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """(z, y, x, 3) fixed-frame positions (mm) of the voxel centres of a level of the fixed grid."""
    axes = [
        ((torch.arange(m, dtype=torch.float32, device=device) + 0.5) * (n / m) - 0.5) * spacing_mm
        for n, m in zip(full_shape, shape, strict=True)
    ]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)


def index_to_normalised(padded_shape: tuple[int, ...]) -> np.ndarray:
    """4x4 matrix: atlas voxel index (z, y, x) -> grid_sample coordinates (z, y, x) for `align_corners=False`."""
    size = np.asarray(padded_shape, dtype=np.float64)
    matrix = np.eye(4)
    matrix[:3, :3] = np.diag(2.0 / size)
    matrix[:3, 3] = 1.0 / size - 1.0
    return matrix


def sampling_grid(points_mm: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """(N, z, y, x, 3) grid_sample grid (x, y, z order) of fixed-frame points through each atlas' matrix.

    `points_mm` is (z, y, x, 3) shared by all atlases or (N, z, y, x, 3); `matrices` is (N, 4, 4).
    """
    n = matrices.shape[0]
    spatial = points_mm.shape[-4:-1]
    # rows reversed: the grid's last axis is (x, y, z) as grid_sample wants
    linear_t = matrices[:, :3, :3].to(points_mm.dtype).flip(1).transpose(1, 2)
    offset = matrices[:, :3, 3].to(points_mm.dtype).flip(1)
    flat = points_mm.reshape(-1 if points_mm.dim() == 5 else 1, int(np.prod(spatial)), 3)
    grid = torch.baddbmm(offset.unsqueeze(1), flat.expand(n, -1, -1), linear_t)
    return grid.reshape(n, *spatial, 3)


def displaced_points(points_mm: torch.Tensor, field_mm: torch.Tensor) -> torch.Tensor:
    """(N, z, y, x, 3) points q + u(q) of a (N, 3, z, y, x) displacement field."""
    return points_mm.unsqueeze(0) + field_mm.permute(0, 2, 3, 4, 1)


def warp(images: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(N, C, z, y, x) images sampled (trilinear, zero outside) at a (N, z, y, x, 3) grid.

    A single image (1, C, ...) is shared by all N grids without copying it N times.
    """
    if images.shape[0] == 1 and grid.shape[0] > 1:
        n = grid.shape[0]
        flat = grid.reshape(1, n * grid.shape[1], *grid.shape[2:])
        out = F.grid_sample(images, flat, mode="bilinear", padding_mode="zeros", align_corners=False)
        return out.reshape(images.shape[1], n, *grid.shape[1:4]).transpose(0, 1)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def pool_to(images: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """(N, C, ...) images averaged down to `shape` (box filter over the same physical box); same shape: no copy."""
    if tuple(images.shape[2:]) == tuple(shape):
        return images
    return F.adaptive_avg_pool3d(images, shape)


def resize_field(field_mm: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A (N, 3, z, y, x) displacement field (mm) interpolated onto another level of the same box."""
    if tuple(field_mm.shape[2:]) == tuple(shape):
        return field_mm
    return F.interpolate(field_mm, size=shape, mode="trilinear", align_corners=False)


def fixed_normaliser(full_shape: tuple[int, ...], spacing_mm: float, device: torch.device | str) -> torch.Tensor:
    """(4, 4) matrix: fixed-frame mm (z, y, x) -> grid_sample coordinates of any level of the fixed grid."""
    index_from_mm = np.eye(4)
    index_from_mm[:3, :3] /= spacing_mm
    return torch.as_tensor(index_to_normalised(full_shape) @ index_from_mm, dtype=torch.float32, device=device)


def compose(first_mm: torch.Tensor, second_mm: torch.Tensor, full_shape: tuple[int, ...],
            spacing_mm: float) -> torch.Tensor:
    """Displacement of x -> x + a(x) followed by y -> y + b(y): c(x) = a(x) + b(x + a(x)); a = first, b = second.

    Both fields (N, 3, *level) lie on one level of the fixed grid; b is taken as 0 outside the grid.
    """
    shape = tuple(first_mm.shape[2:])
    if first_mm.device.type == "cpu":
        from preprocess.register.kernels import compose_kernel

        out = np.empty(first_mm.shape, dtype=np.float32)
        compose_kernel(np.ascontiguousarray(first_mm.numpy(), dtype=np.float32),
                       np.ascontiguousarray(second_mm.numpy(), dtype=np.float32),
                       np.asarray(level_spacing_mm(full_shape, shape, spacing_mm), dtype=np.float64), out)
        return torch.from_numpy(out)
    return compose_torch(first_mm, second_mm, full_shape, spacing_mm)


def compose_torch(first_mm: torch.Tensor, second_mm: torch.Tensor, full_shape: tuple[int, ...],
                  spacing_mm: float) -> torch.Tensor:
    """The grid_sample implementation of `compose` (used on CUDA)."""
    shape = tuple(first_mm.shape[2:])
    identity = fixed_normaliser(full_shape, spacing_mm, first_mm.device).expand(first_mm.shape[0], 4, 4)
    return first_mm + warp_through_torch(second_mm, identity.contiguous(), full_shape, shape, spacing_mm, first_mm)


def level_axes(full_shape: tuple[int, ...], shape: tuple[int, ...], spacing_mm: float) -> tuple[np.ndarray, ...]:
    """Per-axis (scale, offset) with fixed-frame mm = scale * level index + offset (see `level_points_mm`)."""
    ratio = np.asarray(full_shape, dtype=np.float64) / np.asarray(shape, dtype=np.float64)
    return ratio * spacing_mm, (0.5 * ratio - 0.5) * spacing_mm


def normalised_to_index(shape: tuple[int, ...]) -> np.ndarray:
    """4x4 matrix: grid_sample coordinates (z, y, x, `align_corners=False`) -> continuous voxel index."""
    return np.linalg.inv(index_to_normalised(shape))


def channels_last(images: torch.Tensor) -> np.ndarray:
    """(N, C, z, y, x) tensor as a contiguous float32 (N, z, y, x, C) array, the layout of the CPU kernels."""
    return np.ascontiguousarray(images.detach().permute(0, 2, 3, 4, 1).cpu().numpy(), dtype=np.float32)


@dataclass(frozen=True)
class OneHotLabels:
    """The one-hot channels (M, pz, py, px, C) of uint8 labels (M, pz, py, px), channel c being code `codes[c]`,
    kept as the labels: `warp_channels_last` reads 1 byte per voxel instead of 4 per channel (and the
    float32 channels, 0.75 GB per atlas at 1 mm with 12 channels, are never made)."""

    labels: np.ndarray
    codes: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return (*self.labels.shape, len(self.codes))


def warp_channels_last(moving: np.ndarray | OneHotLabels, matrices: torch.Tensor, full_shape: tuple[int, ...],
                       shape: tuple[int, ...], spacing_mm: float, field_mm: torch.Tensor | None = None) -> np.ndarray:
    """CPU kernel form of `warp_through`: channels-last moving (M, pz, py, px, C) -> (N, *shape, C); one-hot
    labels give bit for bit what their float32 channels give."""
    from preprocess.register.kernels import warp_kernel, warp_one_hot_kernel

    n = matrices.shape[0]
    affine = normalised_to_index(tuple(moving.shape[1:4])) @ matrices.detach().double().cpu().numpy()
    scale, offset = level_axes(full_shape, shape, spacing_mm)
    field = (np.zeros((n, 0, 1, 1, 1), dtype=np.float32) if field_mm is None
             else np.ascontiguousarray(field_mm.detach().numpy(), dtype=np.float32))
    out = np.empty((n, *shape, moving.shape[4]), dtype=np.float32)
    if isinstance(moving, OneHotLabels):
        warp_one_hot_kernel(moving.labels, moving.codes, np.ascontiguousarray(affine[:, :3]), scale, offset, field, out)
    else:
        warp_kernel(moving, np.ascontiguousarray(affine[:, :3]), scale, offset, field, out)
    return out


def warp_through(moving: torch.Tensor, matrices: torch.Tensor, full_shape: tuple[int, ...], shape: tuple[int, ...],
                 spacing_mm: float, field_mm: torch.Tensor | None = None) -> torch.Tensor:
    """(N, C, *shape) moving channels sampled at M (q + u(q)) over a level of the fixed grid.

    CPU: one numba pass (`kernels.warp_kernel`); CUDA: `grid_sample`. Both sample trilinearly with zeros outside.
    """
    if moving.device.type != "cpu":
        return warp_through_torch(moving, matrices, full_shape, shape, spacing_mm, field_mm)
    out = warp_channels_last(channels_last(moving), matrices, full_shape, shape, spacing_mm, field_mm)
    return torch.from_numpy(out).permute(0, 4, 1, 2, 3)


def warp_through_torch(moving: torch.Tensor, matrices: torch.Tensor, full_shape: tuple[int, ...],
                       shape: tuple[int, ...], spacing_mm: float, field_mm: torch.Tensor | None = None) -> torch.Tensor:
    """The grid_sample implementation of `warp_through` (used on CUDA)."""
    points = level_points_mm(full_shape, shape, spacing_mm, moving.device)
    moved = points if field_mm is None else displaced_points(points, field_mm)
    return warp(moving, sampling_grid(moved, matrices))


def warp_labels(labels: np.ndarray, n_codes: int, matrix: torch.Tensor, full_shape: tuple[int, ...],
                spacing_mm: float, field_mm: torch.Tensor | None, device: torch.device,
                shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """(z*y*x, n_codes + 1) probabilities of background and codes 1..n_codes of one atlas' (padded) label array,
    warped as one-hot channels through `matrix` (1, 4, 4) and `field_mm` (1, 3, *shape) onto the fixed grid
    (`shape`: a level of it; default the full grid).

    Background is 1 minus the sum of the warped channels (1 outside the atlas).
    """
    shape = tuple(full_shape) if shape is None else tuple(shape)
    if device.type == "cpu":
        from preprocess.register.kernels import warp_labels_kernel

        out = np.empty((*shape, n_codes + 1), dtype=np.float32)
        warp_labels_kernel(*_label_kernel_inputs(labels, matrix, full_shape, spacing_mm, field_mm, shape), out)
        return torch.from_numpy(out.reshape(-1, n_codes + 1))
    return warp_labels_torch(labels, n_codes, matrix, full_shape, spacing_mm, field_mm, device, shape)


def warp_labels_argmax(labels: np.ndarray, n_codes: int, matrix: torch.Tensor, full_shape: tuple[int, ...],
                       spacing_mm: float, field_mm: torch.Tensor | None, device: torch.device,
                       shape: tuple[int, ...] | None = None) -> torch.Tensor:
    """(z*y*x,) `warp_labels(...).argmax(1)`: the most probable code of each voxel; on CPU without the
    probability array (one uint8 per voxel instead of 4 * (n_codes + 1) bytes)."""
    shape = tuple(full_shape) if shape is None else tuple(shape)
    if device.type != "cpu":
        return warp_labels(labels, n_codes, matrix, full_shape, spacing_mm, field_mm, device, shape).argmax(1)
    from preprocess.register.kernels import warp_labels_argmax_kernel

    inputs = _label_kernel_inputs(labels, matrix, full_shape, spacing_mm, field_mm, shape)
    out = np.empty(shape, dtype=np.uint8)
    warp_labels_argmax_kernel(inputs[0], n_codes, *inputs[1:], out)
    return torch.from_numpy(out.reshape(-1))


def _label_kernel_inputs(labels: np.ndarray, matrix: torch.Tensor, full_shape: tuple[int, ...], spacing_mm: float,
                         field_mm: torch.Tensor | None, shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The label kernels' arguments: labels, affine (3, 4) to the atlas index, the level's axes, the field."""
    affine = normalised_to_index(labels.shape) @ matrix.detach().double().cpu().numpy()[0]
    scale, offset = level_axes(full_shape, shape, spacing_mm)
    field = (np.zeros((0, 1, 1, 1), dtype=np.float32) if field_mm is None
             else np.ascontiguousarray(field_mm[0].detach().numpy(), dtype=np.float32))
    return np.ascontiguousarray(labels, dtype=np.uint8), np.ascontiguousarray(affine[:3]), scale, offset, field


def warp_labels_torch(labels: np.ndarray, n_codes: int, matrix: torch.Tensor, full_shape: tuple[int, ...],
                      spacing_mm: float, field_mm: torch.Tensor | None, device: torch.device,
                      shape: tuple[int, ...]) -> torch.Tensor:
    """The grid_sample implementation of `warp_labels` (used on CUDA): one-hot channels, then warped."""
    codes = torch.arange(1, n_codes + 1, device=device).view(-1, 1, 1, 1)
    one_hot = (torch.from_numpy(labels).to(device).unsqueeze(0) == codes).float().unsqueeze(0)
    warped = warp_through_torch(one_hot, matrix, full_shape, shape, spacing_mm, field_mm)
    channels = warped[0].reshape(n_codes, -1).t()
    background = (1.0 - channels.sum(1, keepdim=True)).clamp_min(0.0)
    return torch.cat([background, channels], dim=1)
