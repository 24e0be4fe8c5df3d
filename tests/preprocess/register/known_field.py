"""Known smooth displacement fields, for checking a registration against the deformation that made its input
(tests/preprocess/register/test_real_ct.py and benchmarks/registration.py)."""

from __future__ import annotations

import math

import torch

from preprocess.register.warp import level_points_mm


def smooth_random_field(shape: tuple[int, int, int], spacing_mm: float, peak_mm: float, wavelength_mm: float,
                        generator: torch.Generator, terms: int = 4) -> torch.Tensor:
    """(1, 3, z, y, x) field in mm: per component a sum of `terms` plane sine waves of random direction and phase
    with wavelength about `wavelength_mm`, scaled so the largest displacement is exactly `peak_mm`."""
    points = level_points_mm(shape, shape, spacing_mm)
    field = torch.zeros(1, 3, *shape)
    for component in range(3):
        for _ in range(terms):
            direction = torch.randn(3, generator=generator)
            frequency = direction / direction.norm() * (2 * math.pi / wavelength_mm)
            phase = float(torch.rand(1, generator=generator)) * 2 * math.pi
            field[0, component] += torch.sin((points * frequency).sum(-1) + phase)
    return field * (peak_mm / field.norm(dim=1).max())
