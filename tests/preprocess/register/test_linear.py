import numpy as np
import pytest
import torch

from preprocess.register.channels import one_hot
from preprocess.register.linear import (
    Centroids,
    RegistrationError,
    fit_points,
    physical_to_fixed_frame,
    refine_affine,
    robust_fit,
)
from preprocess.register.settings import RegistrationSettings
from preprocess.register.warp import index_to_normalised, sampling_grid

from .conftest import toy_scan


def _rotation(angle):
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _channels(fixed_scan, movers):
    """One-hot channels of the structures present in the fixed toy scan, for it and the moving scans."""
    present = np.unique(fixed_scan.structures)[1:]
    lut = np.zeros(256, np.int64)
    lut[present] = np.arange(1, len(present) + 1)
    fixed = one_hot(torch.from_numpy(lut[fixed_scan.structures]), len(present))[None]
    moving = torch.stack([one_hot(torch.from_numpy(lut[m.structures]), len(present)) for m in movers])
    return fixed, moving


def test_similarity_fit_recovers_a_known_transform():
    rng = np.random.default_rng(0)
    source = rng.uniform(-50, 50, (8, 3))
    target = 1.1 * source @ _rotation(0.2).T + np.array([5.0, -3.0, 2.0])
    matrix = fit_points(source, target, "similarity")
    np.testing.assert_allclose(matrix[:3, :3], 1.1 * _rotation(0.2), atol=1e-9)
    np.testing.assert_allclose(matrix[:3, 3], [5.0, -3.0, 2.0], atol=1e-9)


def test_robust_fit_drops_the_outlier():
    rng = np.random.default_rng(1)
    source = rng.uniform(-50, 50, (10, 3))
    target = source + np.array([3.0, 0.0, -2.0])
    target[4] += 40.0
    names = tuple(f"s{i}" for i in range(10))
    fit = robust_fit(Centroids(names, source, np.zeros(10, bool)), Centroids(names, target, np.zeros(10, bool)),
                     "similarity", 5.0, "test")
    assert not fit.kept[4] and fit.kept.sum() == 9
    np.testing.assert_allclose(fit.matrix[:3, 3], [3.0, 0.0, -2.0], atol=1e-6)


def test_no_common_structure_is_an_error():
    a = Centroids(("trachea",), np.zeros((1, 3)), np.zeros(1, bool))
    b = Centroids(("aorta",), np.zeros((1, 3)), np.zeros(1, bool))
    with pytest.raises(RegistrationError, match="no TotalSegmentator structure in common"):
        robust_fit(a, b, "similarity", 10.0, "atlas X")


def test_affine_refinement_recovers_a_known_translation():
    fixed_scan, moving_scan = toy_scan(), toy_scan(shift_mm=(6.0, -5.0, 4.0))
    spacing = fixed_scan.grid.spacing_mm[0]
    fixed, moving = _channels(fixed_scan, [moving_scan])
    start = physical_to_fixed_frame(fixed_scan.grid, moving_scan.grid, np.eye(4), index_to_normalised(moving.shape[2:]))
    settings = RegistrationSettings(linear_levels_mm=(8.0, 4.0), linear_iterations=(50, 15))
    start = torch.as_tensor(start, dtype=torch.float32)[None]
    matrices = refine_affine(fixed, moving, torch.ones(1, fixed.shape[1]), start, spacing, settings)
    # where does the fixed centre land in the moving image, in mm?
    centre = torch.tensor([[[(n - 1) * spacing / 2 for n in fixed_scan.grid.shape_zyx]]])
    landed = sampling_grid(centre.view(1, 1, 1, 3), matrices)[0, 0, 0, 0].flip(0).double()
    index = (landed + 1) * torch.tensor(moving.shape[2:], dtype=torch.float64) / 2 - 0.5
    np.testing.assert_allclose(index.numpy() * spacing - centre[0, 0].numpy(), [6.0, -5.0, 4.0], atol=1.5)


def test_batched_affine_equals_one_by_one():
    fixed_scan = toy_scan()
    movers = [toy_scan(shift_mm=(4.0, 0.0, -4.0)), toy_scan(shift_mm=(-4.0, 4.0, 0.0), scale=1.05)]
    spacing = fixed_scan.grid.spacing_mm[0]
    fixed, moving = _channels(fixed_scan, movers)
    groups = range(fixed.shape[1])
    start = torch.as_tensor(index_to_normalised(moving.shape[2:]) @ np.diag([1 / spacing] * 3 + [1.0]),
                            dtype=torch.float32).expand(2, 4, 4).contiguous()
    settings = RegistrationSettings(linear_levels_mm=(8.0,), linear_iterations=(15,))
    weights = torch.ones(2, len(groups))
    together = refine_affine(fixed, moving, weights, start, spacing, settings)
    alone = torch.cat([refine_affine(fixed, moving[i:i + 1], weights[i:i + 1], start[i:i + 1], spacing, settings)
                       for i in range(2)])
    np.testing.assert_allclose(together.numpy(), alone.numpy(), atol=1e-5)
