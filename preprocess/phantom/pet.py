"""PET uptake (SUV) of a simulated scan: tissue activity, scanner blur, a coarser grid and noise.

Uptake is drawn per patient (blood pool, variable myocardium, esophagus, brown fat near station 1), then blurred
with a 5-7 mm FWHM Gaussian, averaged onto a PET grid `factor` CT voxels wide and given noise whose spread grows
with the square root of the signal, as in reconstructed PET.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cache.grid import Grid
from preprocess.phantom.anatomy import PARTS, TISSUES

TISSUE_SUV = {
    "air": 0.0, "fat": 0.35, "muscle": 0.7, "lung": 0.45, "liver": 2.2, "abdomen": 1.2, "myocardium": 3.0,
    "blood": 1.8, "esophagus": 1.8, "airway_wall": 1.0, "airway": 0.05, "cord": 1.1, "vertebra": 1.4,
    "cortical_bone": 0.6,
}
assert set(TISSUE_SUV) == set(TISSUES)
# Active brown fat shows in a few per cent of adult FDG PET scans; each such patient lights the four upper
# stations at once, so a higher rate alone would make SUVmax thresholding overstage most N0 patients.
BROWN_FAT_FRACTION = 0.06


@dataclass(frozen=True)
class PetPhysics:
    """Per-patient PET parameters."""

    tissue_suv: dict[str, float]
    fwhm_mm: float
    noise_level: float  # noise SD = noise_level * sqrt(SUV) (+ a floor)
    brown_fat_suv: float  # 0 when the patient has no active brown fat


def draw_pet_physics(rng: np.random.Generator) -> PetPhysics:
    suv = dict(TISSUE_SUV)
    suv["blood"] = float(rng.uniform(1.5, 2.1))
    suv["liver"] = float(rng.uniform(1.9, 2.6))
    suv["myocardium"] = float(np.clip(rng.lognormal(np.log(3.0), 0.8), 1.2, 14.0))
    suv["esophagus"] = float(rng.uniform(1.3, 2.9))
    brown = float(rng.uniform(2.5, 7.0)) if rng.random() < BROWN_FAT_FRACTION else 0.0
    return PetPhysics(suv, float(rng.uniform(5.0, 7.0)), float(rng.uniform(0.10, 0.18)), brown)


def part_suv(physics: PetPhysics) -> np.ndarray:
    return np.array([physics.tissue_suv[p.tissue] for p in PARTS], dtype=np.float32)


def pet_grid(ct_grid: Grid, factor: int) -> Grid:
    """The PET grid: blocks of `factor`³ CT voxels, voxel centres at the block centres."""
    shape = tuple(-(-n // factor) for n in ct_grid.shape_zyx)
    spacing = tuple(s * factor for s in ct_grid.spacing_mm)
    origin = tuple(o + (factor - 1) * s / 2.0 for o, s in zip(ct_grid.origin_mm, ct_grid.spacing_mm, strict=True))
    return Grid(shape, spacing, origin, ct_grid.direction)


def scanner(activity: np.ndarray, spacing_mm: float, factor: int, physics: PetPhysics,
            rng: np.random.Generator) -> np.ndarray:
    """float32 SUV on the PET grid: blur, block average, noise, no negative values."""
    sigma = physics.fwhm_mm / 2.3548 / spacing_mm
    blurred = ndimage.gaussian_filter(activity, sigma=sigma, truncate=3.0)
    pad = [(0, -n % factor) for n in blurred.shape]
    blurred = np.pad(blurred, pad, mode="edge")
    nz, ny, nx = (n // factor for n in blurred.shape)
    coarse = blurred.reshape(nz, factor, ny, factor, nx, factor).mean(axis=(1, 3, 5))
    return add_pet_noise(coarse, physics.noise_level, rng)


def add_pet_noise(suv: np.ndarray, noise_level: float, rng: np.random.Generator) -> np.ndarray:
    """float32 `suv` plus correlated noise of SD noise_level * sqrt(SUV + 0.05), clipped at 0 (as reconstructed)."""
    noise = rng.standard_normal(suv.shape, dtype=np.float32)
    noise = ndimage.gaussian_filter(noise, sigma=0.5)  # correlated like reconstructed noise
    noise /= max(float(noise.std()), 1e-6)
    noisy = suv + noise_level * np.sqrt(np.maximum(suv, 0.0) + 0.05) * noise
    return np.maximum(noisy, 0.0).astype(np.float32)


def pet_on_ct_grid(suv: np.ndarray, factor: int, shape_zyx: tuple[int, int, int]) -> np.ndarray:
    """Linear interpolation of the PET volume back onto the CT grid (for truth SUVmax and QA)."""
    if factor == 1:
        return suv[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
    fine = ndimage.zoom(suv, factor, order=1, grid_mode=True, mode="nearest")
    return fine[: shape_zyx[0], : shape_zyx[1], : shape_zyx[2]]
