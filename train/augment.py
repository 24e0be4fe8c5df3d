"""Batched spatial and intensity augmentation on the device holding the patches (GPU or CPU tensors).

The sampler reads an enlarged crop (edge `crop_vox`) around each sampled centre so that a rotated or deformed
patch still has image under it. Per sample, a random affine matrix A (rotation, per-axis scaling, shear) and a
smooth random displacement field d are composed into ONE sampling grid: output voxel u (offset from the patch
centre, voxels, (z, y, x)) reads the crop at c + A u + d(u), c the crop centre. The grid only spans the central
`patch_vox`^3 region, so the same `grid_sample` also performs the centre crop. Gaussian noise follows.

Centre convention (even edges): the crop's voxel crop_vox // 2 is the sampled centre, and it lands on the
patch's voxel patch_vox // 2; with no augmentation the patch equals crop[c - P/2 : c + P/2] exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges of the random transforms (a subset of TrainSettings)."""

    rotation_deg: float = 15.0
    scale_fraction: float = 0.1
    shear_fraction: float = 0.05
    elastic_vox: float = 2.0
    elastic_grid: int = 4
    noise_std: float = 0.02

    @classmethod
    def from_train(cls, settings) -> AugmentSettings:
        return cls(settings.rotation_deg, settings.scale_fraction, settings.shear_fraction, settings.elastic_vox,
                   settings.elastic_grid, settings.noise_std)


@dataclass(frozen=True)
class Transforms:
    """Per-sample transforms: `matrix` (B, 3, 3) acting on (z, y, x) offsets; `displacement` (B, 3, g, g, g)
    in voxels, (z, y, x) components, at control points spanning the patch (upsampled trilinearly)."""

    matrix: torch.Tensor
    displacement: torch.Tensor


def required_crop_vox(patch_vox: int, settings: AugmentSettings) -> int:
    """Smallest even crop edge that holds every voxel the transforms can read (worst case, plus 3 sd elastic)."""
    stretch = (1 + settings.scale_fraction) * (1 + 2 * settings.shear_fraction)
    reach = patch_vox / 2 * stretch * math.sqrt(3) + 3 * settings.elastic_vox + 1
    return 2 * math.ceil(reach)


def _uniform(shape: tuple[int, ...], bound: float, generator: torch.Generator) -> torch.Tensor:
    return (torch.rand(shape, generator=generator, device=generator.device) * 2 - 1) * bound


def rotation_matrices(angles_rad: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations acting on (z, y, x) vectors, from angles (B, 3) about the z, y and x axes."""
    cos, sin = angles_rad.cos(), angles_rad.sin()
    one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

    def matrix(rows):
        return torch.stack([torch.stack(row, dim=-1) for row in rows], dim=-2)

    # about z: mixes y and x; about y: mixes z and x; about x: mixes z and y
    rz = matrix([[one, zero, zero], [zero, cos[:, 0], -sin[:, 0]], [zero, sin[:, 0], cos[:, 0]]])
    ry = matrix([[cos[:, 1], zero, sin[:, 1]], [zero, one, zero], [-sin[:, 1], zero, cos[:, 1]]])
    rx = matrix([[cos[:, 2], -sin[:, 2], zero], [sin[:, 2], cos[:, 2], zero], [zero, zero, one]])
    return rz @ ry @ rx


def random_transforms(batch: int, settings: AugmentSettings, generator: torch.Generator) -> Transforms:
    """Draw B affine matrices and elastic control displacements from `generator` (on its device)."""
    angles = _uniform((batch, 3), math.radians(settings.rotation_deg), generator)
    scale = torch.diag_embed(1 + _uniform((batch, 3), settings.scale_fraction, generator))
    shear = torch.eye(3, device=generator.device).repeat(batch, 1, 1)
    upper = torch.triu_indices(3, 3, offset=1)
    shear[:, upper[0], upper[1]] = _uniform((batch, 3), settings.shear_fraction, generator)
    g = settings.elastic_grid
    displacement = torch.randn((batch, 3, g, g, g), generator=generator, device=generator.device)
    return Transforms(rotation_matrices(angles) @ shear @ scale, displacement * settings.elastic_vox)


def identity_transforms(batch: int, device: torch.device | str = "cpu", elastic_grid: int = 4) -> Transforms:
    g = elastic_grid
    return Transforms(torch.eye(3, device=device).repeat(batch, 1, 1), torch.zeros((batch, 3, g, g, g), device=device))


def sampling_grid(transforms: Transforms, crop_vox: int, patch_vox: int) -> torch.Tensor:
    """grid_sample grid (B, P, P, P, 3) in normalised (x, y, z) order, align_corners=True."""
    device = transforms.matrix.device
    offsets = torch.arange(patch_vox, device=device, dtype=torch.float32) - patch_vox // 2
    u = torch.stack(torch.meshgrid(offsets, offsets, offsets, indexing="ij"), dim=-1)  # (P, P, P, 3) z, y, x
    position = torch.einsum("bij,zyxj->bzyxi", transforms.matrix.float(), u)
    if bool(transforms.displacement.any()):
        field = F.interpolate(transforms.displacement.float(), size=(patch_vox,) * 3, mode="trilinear",
                              align_corners=True)
        position = position + field.permute(0, 2, 3, 4, 1)
    index = position + crop_vox // 2
    normalised = 2 * index / (crop_vox - 1) - 1
    return normalised.flip(-1)


def warp(crops: torch.Tensor, transforms: Transforms, patch_vox: int, mask_channel: int | None = None) -> torch.Tensor:
    """Patches (B, C, P, P, P) read from crops (B, C, D, D, D) through the transforms in one grid_sample.

    A binary station-mask channel is thresholded back to {0, 1} after interpolation.
    """
    grid = sampling_grid(transforms, crops.shape[-1], patch_vox).to(crops.dtype)
    patches = F.grid_sample(crops, grid, mode="bilinear", padding_mode="border", align_corners=True)
    if mask_channel is not None:
        patches[:, mask_channel] = (patches[:, mask_channel] > 0.5).to(patches.dtype)
    return patches


def centre_crop(crops: torch.Tensor, patch_vox: int) -> torch.Tensor:
    """The central patch_vox^3 of crops (B, C, D, D, D), centre voxel D // 2 -> P // 2 (no interpolation)."""
    start = crops.shape[-1] // 2 - patch_vox // 2
    end = start + patch_vox
    return crops[..., start:end, start:end, start:end]


def augment(crops: torch.Tensor, patch_vox: int, settings: AugmentSettings, generator: torch.Generator,
            mask_channel: int | None = None) -> torch.Tensor:
    """Random affine + elastic (one grid_sample, centre region only), then Gaussian noise on image channels."""
    transforms = random_transforms(crops.shape[0], settings, generator)
    patches = warp(crops, transforms, patch_vox, mask_channel)
    if settings.noise_std > 0:
        noise = torch.randn(patches.shape, generator=generator, device=generator.device, dtype=torch.float32)
        noise = (noise * settings.noise_std).to(patches.dtype)
        if mask_channel is not None:
            noise[:, mask_channel] = 0
        patches = patches + noise
    return patches
