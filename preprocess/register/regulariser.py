"""Field regularisers: the diffusive one, (I - tau*alpha*Laplacian)^-1 solved exactly by a 3D DCT, and a Gaussian.

The discrete Laplacian (3-point per axis) with Neumann boundaries (mirror about the outer faces) is diagonal in the
DCT-II basis, with eigenvalues -sum_d (2 - 2 cos(pi k_d / n_d)) / h_d^2. So the semi-implicit update of
Werner et al.'s variational registration is one forward DCT, a division and one inverse DCT: no iterative
solver and no Python loop over slices. On CPU, scipy.fft (pocketfft, multi-threaded) does the transform; on
CUDA, a torch FFT implementation of the DCT (Makhoul's reordering) does it.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch
import torch.nn.functional as F


def _dct_last(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last axis via an FFT of the even/odd reordered signal."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spectrum = torch.fft.fft(v, dim=-1)
    k = torch.arange(n, device=x.device, dtype=x.dtype)
    twiddle = torch.exp(-1j * math.pi * k / (2 * n)).to(spectrum.dtype)
    out = (spectrum * twiddle).real * math.sqrt(2.0 / n)
    out[..., 0] = out[..., 0] / math.sqrt(2.0)
    return out


def _idct_last(y: torch.Tensor) -> torch.Tensor:
    """Inverse of `_dct_last` (orthonormal DCT-III) along the last axis."""
    n = y.shape[-1]
    scaled = y * math.sqrt(n / 2.0)
    scaled[..., 0] = scaled[..., 0] * math.sqrt(2.0)
    k = torch.arange(n, device=y.device, dtype=y.dtype)
    shifted = torch.cat([torch.zeros_like(scaled[..., :1]), scaled[..., 1:].flip(-1)], dim=-1)
    spectrum = torch.complex(scaled, -shifted) * torch.exp(1j * math.pi * k / (2 * n)).to(torch.complex64)
    v = torch.fft.ifft(spectrum, dim=-1).real
    x = torch.empty_like(v)
    half = (n + 1) // 2
    x[..., ::2] = v[..., :half]
    x[..., 1::2] = v[..., half:].flip(-1)
    return x


def dct3(x: torch.Tensor, inverse: bool = False, overwrite: bool = False) -> torch.Tensor:
    """Orthonormal 3D DCT-II (or its inverse) over the last three axes; `overwrite`: on CPU the transform may
    work in x's memory (x is then garbage; no copy of a field, the same values)."""
    if x.device.type == "cpu":
        function = scipy.fft.idctn if inverse else scipy.fft.dctn
        out = function(x.detach().numpy(), type=2, axes=(-3, -2, -1), norm="ortho", workers=torch.get_num_threads(),
                       overwrite_x=overwrite)
        return torch.from_numpy(np.ascontiguousarray(out))
    transform = _idct_last if inverse else _dct_last
    for axis in (-1, -2, -3):
        x = transform(x.transpose(axis, -1)).transpose(axis, -1)
    return x.contiguous()


def diffusive_denominator(
    shape: tuple[int, int, int], spacing_mm: tuple[float, ...], tau_alpha_mm2: float, device: torch.device | str
) -> torch.Tensor:
    """(z, y, x) eigenvalues of (I - tau*alpha*Laplacian) in the DCT-II basis (Neumann boundaries)."""
    total = torch.ones(shape, dtype=torch.float32, device=device)
    for axis, (n, h) in enumerate(zip(shape, spacing_mm, strict=True)):
        k = torch.arange(n, dtype=torch.float64, device=device)
        eigen = ((2.0 - 2.0 * torch.cos(math.pi * k / n)) / h**2 * tau_alpha_mm2).to(torch.float32)
        view = [1, 1, 1]
        view[axis] = n
        total = total + eigen.view(view)
    return total


def diffusive_solve(rhs: torch.Tensor, denominator: torch.Tensor, overwrite_rhs: bool = False) -> torch.Tensor:
    """Solve (I - tau*alpha*Laplacian) u = rhs for every (z, y, x) volume of a (..., z, y, x) tensor; with
    `overwrite_rhs` the transforms work in rhs' memory (the registration's update, not needed afterwards)."""
    spectrum = dct3(rhs, overwrite=overwrite_rhs)
    spectrum /= denominator  # in place: the spectrum is a fresh tensor, one field less at the finest level
    return dct3(spectrum, inverse=True, overwrite=True)


def gaussian_kernel(sigma_vox: float) -> torch.Tensor:
    radius = max(int(math.ceil(3.0 * sigma_vox)), 1)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (t / max(sigma_vox, 1e-6)) ** 2)
    return kernel / kernel.sum()


def gaussian_smooth(field: torch.Tensor, sigma_mm: float, spacing_mm: tuple[float, ...]) -> torch.Tensor:
    """(N, K, z, y, x) tensor smoothed by a separable Gaussian of `sigma_mm` (edges replicated)."""
    n, k = field.shape[:2]
    x = field.reshape(n * k, 1, *field.shape[2:])
    for axis, h in enumerate(spacing_mm):
        kernel = gaussian_kernel(sigma_mm / h).to(field.device)
        radius = kernel.numel() // 2
        shape = [1, 1, 1, 1, 1]
        shape[2 + axis] = kernel.numel()
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
        x = F.conv3d(F.pad(x, pad, mode="replicate"), kernel.view(shape))
    return x.reshape(field.shape)
