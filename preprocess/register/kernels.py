"""Numba CPU kernels for the hot loop of the deformable stage: trilinear warp of many channels and the demons force.

On CPU, torch's grid_sample and a chain of tensor ops over (atlas, channel, voxel) arrays pass over memory many
times per iteration; these kernels make one pass, computing each voxel's sampling position and trilinear weights
once for all channels. They compute exactly what the torch path (`warp.warp`, `variational.demons_force_torch`)
computes, which CUDA uses; tests check that both agree.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(inline="always", fastmath=True, cache=True)
def _source_position(z, y, x, axis_scale, axis_offset, uz, uy, ux, a):  # pragma: no cover (numba)
    """Continuous moving index (z, y, x) of fixed voxel (z, y, x): a @ (q + u), q = axis_scale * index + offset."""
    qz = axis_scale[0] * z + axis_offset[0] + uz
    qy = axis_scale[1] * y + axis_offset[1] + uy
    qx = axis_scale[2] * x + axis_offset[2] + ux
    sz = a[0, 0] * qz + a[0, 1] * qy + a[0, 2] * qx + a[0, 3]
    sy = a[1, 0] * qz + a[1, 1] * qy + a[1, 2] * qx + a[1, 3]
    sx = a[2, 0] * qz + a[2, 1] * qy + a[2, 2] * qx + a[2, 3]
    return sz, sy, sx


@numba.njit(inline="always", fastmath=True, cache=True)
def _source_cell(z, y, x, axis_scale, axis_offset, uz, uy, ux, a):  # pragma: no cover (numba)
    """The moving voxel cell that fixed voxel (z, y, x) falls in: its lower corner and the fractions within it."""
    sz, sy, sx = _source_position(z, y, x, axis_scale, axis_offset, uz, uy, ux, a)
    z0 = int(np.floor(sz))
    y0 = int(np.floor(sy))
    x0 = int(np.floor(sx))
    return z0, y0, x0, sz - z0, sy - y0, sx - x0


@numba.njit(inline="always", fastmath=True, cache=True)
def _add_label_weights(labels, z0, y0, x0, fz, fy, fx, target):  # pragma: no cover (numba)
    """Add each corner's trilinear weight to target[its code] (code 0 for corners outside the labels)."""
    pz, py, px = labels.shape
    for dz in range(2):
        zz = z0 + dz
        wz = fz if dz else 1.0 - fz
        for dy in range(2):
            yy = y0 + dy
            wy = wz * (fy if dy else 1.0 - fy)
            for dx in range(2):
                xx = x0 + dx
                w = wy * (fx if dx else 1.0 - fx)
                code = 0
                if 0 <= zz < pz and 0 <= yy < py and 0 <= xx < px:
                    code = labels[zz, yy, xx]
                target[code] += w


@numba.njit(inline="always", fastmath=True, cache=True)
def _corner_weights(fz, fy, fx):  # pragma: no cover (numba)
    """Trilinear weights of the 8 corners (z, y, x offsets 000, 001, ..., 111) of fractional position (fz, fy, fx)."""
    return ((1.0 - fz) * (1.0 - fy) * (1.0 - fx), (1.0 - fz) * (1.0 - fy) * fx, (1.0 - fz) * fy * (1.0 - fx),
            (1.0 - fz) * fy * fx, fz * (1.0 - fy) * (1.0 - fx), fz * (1.0 - fy) * fx, fz * fy * (1.0 - fx),
            fz * fy * fx)


@numba.njit(parallel=True, fastmath=True, cache=True)
def warp_kernel(moving, affine, axis_scale, axis_offset, field, out):  # pragma: no cover (numba)
    """Trilinear samples (zero outside) of channels-last moving (M, pz, py, px, C) at affine[n] @ (q + u(q)).

    q = axis_scale * index + axis_offset per axis (fixed-frame mm of the level's voxels); field (N, 3, z, y, x)
    in mm, or shape (N, 0, 1, 1, 1) for none; affine (N, 3, 4) maps mm to the moving level's continuous index;
    moving with M = 1 is shared by all N. out (N, z, y, x, C). Channels last: the 8 corners of a sample hold all
    channels in 8 short contiguous runs, instead of 8 * C scattered reads.
    """
    n_atlas, nz, ny, nx, n_channels = out.shape
    pz, py, px = moving.shape[1], moving.shape[2], moving.shape[3]
    has_field = field.shape[1] == 3
    for job in numba.prange(n_atlas * nz):
        n = job // nz
        z = job % nz
        m = n if moving.shape[0] > 1 else 0
        a = affine[n]
        for y in range(ny):
            for x in range(nx):
                uz = uy = ux = 0.0
                if has_field:
                    uz, uy, ux = field[n, 0, z, y, x], field[n, 1, z, y, x], field[n, 2, z, y, x]
                z0, y0, x0, fz, fy, fx = _source_cell(z, y, x, axis_scale, axis_offset, uz, uy, ux, a)
                if 0 <= z0 and 0 <= y0 and 0 <= x0 and z0 + 1 < pz and y0 + 1 < py and x0 + 1 < px:
                    # all 8 corners inside (almost every voxel): no bounds checks, one write per channel
                    w000, w001, w010, w011, w100, w101, w110, w111 = _corner_weights(fz, fy, fx)
                    for c in range(n_channels):
                        out[n, z, y, x, c] = (
                            w000 * moving[m, z0, y0, x0, c] + w001 * moving[m, z0, y0, x0 + 1, c]
                            + w010 * moving[m, z0, y0 + 1, x0, c] + w011 * moving[m, z0, y0 + 1, x0 + 1, c]
                            + w100 * moving[m, z0 + 1, y0, x0, c] + w101 * moving[m, z0 + 1, y0, x0 + 1, c]
                            + w110 * moving[m, z0 + 1, y0 + 1, x0, c] + w111 * moving[m, z0 + 1, y0 + 1, x0 + 1, c]
                        )
                    continue
                for c in range(n_channels):
                    out[n, z, y, x, c] = 0.0
                if z0 < -1 or y0 < -1 or x0 < -1 or z0 >= pz or y0 >= py or x0 >= px:
                    continue
                for dz in range(2):
                    zz = z0 + dz
                    if zz < 0 or zz >= pz:
                        continue
                    wz = fz if dz else 1.0 - fz
                    for dy in range(2):
                        yy = y0 + dy
                        if yy < 0 or yy >= py:
                            continue
                        wy = wz * (fy if dy else 1.0 - fy)
                        for dx in range(2):
                            xx = x0 + dx
                            if xx < 0 or xx >= px:
                                continue
                            w = wy * (fx if dx else 1.0 - fx)
                            for c in range(n_channels):
                                out[n, z, y, x, c] += w * moving[m, zz, yy, xx, c]


@numba.njit(parallel=True, fastmath=True, cache=True)
def warp_one_hot_kernel(labels, codes, affine, axis_scale, axis_offset, field, out):  # pragma: no cover
    """`warp_kernel` of the one-hot channels of uint8 labels (M, pz, py, px), channel c being code codes[c],
    read from the labels (1 byte per corner, not 4 per channel); each channel's trilinear sum is the same
    expression as in `warp_kernel`, with the corner's value 1.0 or 0.0, so the result is bit for bit the same."""
    n_atlas, nz, ny, nx, n_channels = out.shape
    pz, py, px = labels.shape[1], labels.shape[2], labels.shape[3]
    has_field = field.shape[1] == 3
    for job in numba.prange(n_atlas * nz):
        n = job // nz
        z = job % nz
        m = n if labels.shape[0] > 1 else 0
        a = affine[n]
        for y in range(ny):
            for x in range(nx):
                uz = uy = ux = 0.0
                if has_field:
                    uz, uy, ux = field[n, 0, z, y, x], field[n, 1, z, y, x], field[n, 2, z, y, x]
                z0, y0, x0, fz, fy, fx = _source_cell(z, y, x, axis_scale, axis_offset, uz, uy, ux, a)
                if 0 <= z0 and 0 <= y0 and 0 <= x0 and z0 + 1 < pz and y0 + 1 < py and x0 + 1 < px:
                    # all 8 corners inside (almost every voxel): no bounds checks, one write per channel
                    w000, w001, w010, w011, w100, w101, w110, w111 = _corner_weights(fz, fy, fx)
                    l000, l001 = labels[m, z0, y0, x0], labels[m, z0, y0, x0 + 1]
                    l010, l011 = labels[m, z0, y0 + 1, x0], labels[m, z0, y0 + 1, x0 + 1]
                    l100, l101 = labels[m, z0 + 1, y0, x0], labels[m, z0 + 1, y0, x0 + 1]
                    l110, l111 = labels[m, z0 + 1, y0 + 1, x0], labels[m, z0 + 1, y0 + 1, x0 + 1]
                    for c in range(n_channels):
                        k = codes[c]
                        out[n, z, y, x, c] = (
                            w000 * (1.0 if l000 == k else 0.0) + w001 * (1.0 if l001 == k else 0.0)
                            + w010 * (1.0 if l010 == k else 0.0) + w011 * (1.0 if l011 == k else 0.0)
                            + w100 * (1.0 if l100 == k else 0.0) + w101 * (1.0 if l101 == k else 0.0)
                            + w110 * (1.0 if l110 == k else 0.0) + w111 * (1.0 if l111 == k else 0.0)
                        )
                    continue
                for c in range(n_channels):
                    out[n, z, y, x, c] = 0.0
                if z0 < -1 or y0 < -1 or x0 < -1 or z0 >= pz or y0 >= py or x0 >= px:
                    continue
                for dz in range(2):
                    zz = z0 + dz
                    if zz < 0 or zz >= pz:
                        continue
                    wz = fz if dz else 1.0 - fz
                    for dy in range(2):
                        yy = y0 + dy
                        if yy < 0 or yy >= py:
                            continue
                        wy = wz * (fy if dy else 1.0 - fy)
                        for dx in range(2):
                            xx = x0 + dx
                            if xx < 0 or xx >= px:
                                continue
                            w = wy * (fx if dx else 1.0 - fx)
                            for c in range(n_channels):
                                out[n, z, y, x, c] += w * (1.0 if labels[m, zz, yy, xx] == codes[c] else 0.0)


@numba.njit(parallel=True, fastmath=True, cache=True)
def demons_force_kernel(fixed, warped, weights, spacing, normaliser, gradient_mode, ssd, force, squared):
    """Demons (or SSD) force (N, 3, z, y, x) and per (atlas, slice) weighted squared differences (N, z).

    gradient_mode: 0 symmetric (mean of fixed and warped gradients), 1 fixed, 2 warped moving; central
    differences, one-sided at the edges (as torch.gradient). Channels last: fixed (1, z, y, x, C), warped
    (N, z, y, x, C); weights (N, C).
    """
    n_atlas, nz, ny, nx, n_channels = warped.shape
    for job in numba.prange(n_atlas * nz):
        n = job // nz
        z = job % nz
        zm = max(z - 1, 0)
        zp = min(z + 1, nz - 1)
        hz = (zp - zm) * spacing[0]
        total = 0.0
        for y in range(ny):
            ym = max(y - 1, 0)
            yp = min(y + 1, ny - 1)
            hy = (yp - ym) * spacing[1]
            for x in range(nx):
                xm = max(x - 1, 0)
                xp = min(x + 1, nx - 1)
                hx = (xp - xm) * spacing[2]
                num_z = 0.0
                num_y = 0.0
                num_x = 0.0
                grad2 = 0.0
                diff2 = 0.0
                for c in range(n_channels):
                    w = weights[n, c]
                    if w == 0.0:
                        continue
                    d = fixed[0, z, y, x, c] - warped[n, z, y, x, c]
                    gz = 0.0
                    gy = 0.0
                    gx = 0.0
                    if gradient_mode != 2:
                        gz += (fixed[0, zp, y, x, c] - fixed[0, zm, y, x, c]) / hz
                        gy += (fixed[0, z, yp, x, c] - fixed[0, z, ym, x, c]) / hy
                        gx += (fixed[0, z, y, xp, c] - fixed[0, z, y, xm, c]) / hx
                    if gradient_mode != 1:
                        gz += (warped[n, zp, y, x, c] - warped[n, zm, y, x, c]) / hz
                        gy += (warped[n, z, yp, x, c] - warped[n, z, ym, x, c]) / hy
                        gx += (warped[n, z, y, xp, c] - warped[n, z, y, xm, c]) / hx
                    if gradient_mode == 0:
                        gz *= 0.5
                        gy *= 0.5
                        gx *= 0.5
                    num_z += w * d * gz
                    num_y += w * d * gy
                    num_x += w * d * gx
                    grad2 += w * (gz * gz + gy * gy + gx * gx)
                    diff2 += w * d * d
                total += diff2
                if ssd:
                    scale = 1.0
                else:
                    denominator = grad2 + diff2 / normaliser
                    scale = 1.0 / denominator if denominator > 1e-9 else 0.0
                force[n, 0, z, y, x] = num_z * scale
                force[n, 1, z, y, x] = num_y * scale
                force[n, 2, z, y, x] = num_x * scale
        squared[n, z] = total


@numba.njit(parallel=True, fastmath=True, cache=True)
def compose_kernel(first, second, level_spacing, out):  # pragma: no cover (numba)
    """out = a + b(x + a(x)) for displacement fields a = first, b = second (N, 3, z, y, x) in mm on one grid of
    per-axis spacing `level_spacing` (mm); b is 0 outside the grid (as `warp.compose` on CUDA)."""
    n_atlas, _, nz, ny, nx = first.shape
    for job in numba.prange(n_atlas * nz):
        n = job // nz
        z = job % nz
        for y in range(ny):
            for x in range(nx):
                sz = z + first[n, 0, z, y, x] / level_spacing[0]
                sy = y + first[n, 1, z, y, x] / level_spacing[1]
                sx = x + first[n, 2, z, y, x] / level_spacing[2]
                z0 = int(np.floor(sz))
                y0 = int(np.floor(sy))
                x0 = int(np.floor(sx))
                fz = sz - z0
                fy = sy - y0
                fx = sx - x0
                v0 = 0.0
                v1 = 0.0
                v2 = 0.0
                inside = 0 <= z0 and 0 <= y0 and 0 <= x0 and z0 + 1 < nz and y0 + 1 < ny and x0 + 1 < nx
                for dz in range(2):
                    zz = z0 + dz
                    if not inside and (zz < 0 or zz >= nz):
                        continue
                    wz = fz if dz else 1.0 - fz
                    for dy in range(2):
                        yy = y0 + dy
                        if not inside and (yy < 0 or yy >= ny):
                            continue
                        wy = wz * (fy if dy else 1.0 - fy)
                        for dx in range(2):
                            xx = x0 + dx
                            if not inside and (xx < 0 or xx >= nx):
                                continue
                            w = wy * (fx if dx else 1.0 - fx)
                            v0 += w * second[n, 0, zz, yy, xx]
                            v1 += w * second[n, 1, zz, yy, xx]
                            v2 += w * second[n, 2, zz, yy, xx]
                out[n, 0, z, y, x] = first[n, 0, z, y, x] + v0
                out[n, 1, z, y, x] = first[n, 1, z, y, x] + v1
                out[n, 2, z, y, x] = first[n, 2, z, y, x] + v2


@numba.njit(parallel=True, fastmath=True, cache=True)
def warp_labels_kernel(labels, affine, axis_scale, axis_offset, field, out):  # pragma: no cover (numba)
    """Warped one-hot probabilities of a label array without building the one-hot channels.

    labels (pz, py, px) uint8; out (z, y, x, K + 1): per voxel, the trilinear weight of each code's corners
    (code 0 and everything outside the array count as background), i.e. the warped one-hot channels with
    background = 1 - sum. affine (3, 4), field (3, z, y, x) mm or shape (0, 1, 1, 1), as in `warp_kernel`.
    """
    nz, ny, nx, n_codes = out.shape
    has_field = field.shape[0] == 3
    for z in numba.prange(nz):
        for y in range(ny):
            for x in range(nx):
                uz = uy = ux = 0.0
                if has_field:
                    uz, uy, ux = field[0, z, y, x], field[1, z, y, x], field[2, z, y, x]
                z0, y0, x0, fz, fy, fx = _source_cell(z, y, x, axis_scale, axis_offset, uz, uy, ux, affine)
                for c in range(n_codes):
                    out[z, y, x, c] = 0.0
                _add_label_weights(labels, z0, y0, x0, fz, fy, fx, out[z, y, x])


@numba.njit(parallel=True, fastmath=True, cache=True)
def warp_labels_argmax_kernel(labels, n_codes, affine, axis_scale, axis_offset, field, out):  # pragma: no cover
    """The argmax over codes 0..n_codes of `warp_labels_kernel`'s probabilities, per voxel, into out (z, y, x)
    uint8, without the (z, y, x, n_codes + 1) array: each voxel's probabilities are summed in the same order
    and float32 rounding, and ties go to the lowest code, as torch's argmax does."""
    nz, ny, nx = out.shape
    has_field = field.shape[0] == 3
    for z in numba.prange(nz):
        probability = np.empty(n_codes + 1, dtype=np.float32)
        for y in range(ny):
            for x in range(nx):
                uz = uy = ux = 0.0
                if has_field:
                    uz, uy, ux = field[0, z, y, x], field[1, z, y, x], field[2, z, y, x]
                z0, y0, x0, fz, fy, fx = _source_cell(z, y, x, axis_scale, axis_offset, uz, uy, ux, affine)
                probability[:] = 0.0
                _add_label_weights(labels, z0, y0, x0, fz, fy, fx, probability)
                best = 0
                for c in range(1, n_codes + 1):
                    if probability[c] > probability[best]:
                        best = c
                out[z, y, x] = best


@numba.njit(parallel=True, cache=True)
def one_hot_channels_last_kernel(labels, codes, out):  # pragma: no cover (numba)
    """out (N, z, y, x, C) float32: 1 where labels (N, z, y, x) equals codes[c], else 0 (one-hot, channels last)."""
    n_atlas, nz, ny, nx, n_channels = out.shape
    for job in numba.prange(n_atlas * nz):
        n = job // nz
        z = job % nz
        for y in range(ny):
            for x in range(nx):
                value = labels[n, z, y, x]
                for c in range(n_channels):
                    out[n, z, y, x, c] = 1.0 if value == codes[c] else 0.0
