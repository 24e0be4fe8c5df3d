import typing
from dataclasses import replace

import numpy as np
import torch

from preprocess.register.settings import RegistrationSettings
from preprocess.register.variational import (
    FORCES,
    _gradient,
    exponential,
    jacobian_determinant,
    register_deformable,
)
from preprocess.register.warp import channels_last, fixed_normaliser, level_points_mm, sampling_grid, warp


def _blobs(shape, spacing, shift_mm=(0.0, 0.0, 0.0)):
    """Two smooth channels: Gaussian blobs, the second one off-centre."""
    zz, yy, xx = (np.indices(shape) * spacing).astype(np.float32)
    centre = (np.asarray(shape) - 1) * spacing / 2 + np.asarray(shift_mm)
    r2 = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2
    r2b = (zz - centre[0] - 6) ** 2 + (yy - centre[1] + 4) ** 2 + (xx - centre[2]) ** 2
    return torch.from_numpy(np.stack([np.exp(-r2 / 200.0), np.exp(-r2b / 60.0)]).astype(np.float32))[None]


def test_every_force_has_both_implementations_and_they_agree():
    assert set(FORCES) == set(typing.get_args(typing.get_type_hints(RegistrationSettings)["force"]))
    g = torch.Generator().manual_seed(2)
    fixed, warped = torch.rand(1, 3, 6, 7, 8, generator=g), torch.rand(2, 3, 6, 7, 8, generator=g)
    weights = torch.tensor([[1.0, 0.0, 0.5], [1.0, 1.0, 1.0]])
    spacing = (2.0, 2.5, 3.0)
    for name, force in FORCES.items():
        for mode in ("symmetric", "fixed", "moving"):
            settings = RegistrationSettings(force_gradient=mode, force=name)
            a, metric_a = force.cpu(fixed, channels_last(fixed), channels_last(warped), weights, spacing, settings)
            for fixed_grad in (_gradient(fixed, spacing), None):  # given, or taken per channel as needed
                b, metric_b = force.cuda(fixed, warped, fixed_grad, weights, spacing, settings)
                np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)
                np.testing.assert_allclose(metric_a.numpy(), metric_b.numpy(), rtol=1e-5)
    ssd, _ = FORCES["ssd"].cuda(fixed, warped, None, weights, spacing, RegistrationSettings())
    demons, _ = FORCES["demons"].cuda(fixed, warped, None, weights, spacing, RegistrationSettings())
    assert not torch.allclose(ssd, demons)  # the table tells the two apart, not the settings' name


def test_jacobian_of_a_known_linear_field_and_folding():
    shape, spacing = (6, 7, 8), 2.0
    points = level_points_mm(shape, shape, spacing)
    field = torch.zeros(1, 3, *shape)
    field[0, 2] = 0.3 * points[..., 2]  # stretch x by 1.3
    field[0, 0] = -0.2 * points[..., 0]  # squeeze z by 0.8
    np.testing.assert_allclose(jacobian_determinant(field, (spacing,) * 3).numpy(), 1.3 * 0.8, rtol=1e-5)
    field[0, 2] = -1.5 * points[..., 2]  # x folds over itself
    assert bool((jacobian_determinant(field, (spacing,) * 3) < 0).all())


def test_exponential_of_a_constant_velocity_is_that_shift():
    shape, spacing = (5, 6, 7), 2.0
    velocity = torch.zeros(1, 3, *shape)
    velocity[:, 1] = 3.0
    result = exponential(velocity, shape, spacing, (spacing,) * 3)
    # inside (away from the border, where the shifted field meets zero outside) it is exactly the shift
    np.testing.assert_allclose(result[:, :, :, 2:-2].numpy(), velocity[:, :, :, 2:-2].numpy(), atol=1e-5)


def _recovery(settings):
    shape, spacing = (20, 20, 20), 2.0
    fixed, moving = _blobs(shape, spacing), _blobs(shape, spacing, shift_mm=(2.0, -2.0, 1.0))
    identity = fixed_normaliser(shape, spacing, "cpu")[None]
    result = register_deformable(fixed, moving, torch.ones(1, 2), identity, spacing, settings)
    warped = warp(moving, sampling_grid(level_points_mm(shape, shape, spacing).unsqueeze(0)
                                        + result.field_mm.permute(0, 2, 3, 4, 1), identity))
    return float(((fixed - moving) ** 2).mean()), float(((fixed - warped) ** 2).mean()), result


def test_deformable_stage_recovers_a_smooth_shift():
    settings = RegistrationSettings(deformable_levels_mm=(4.0, 0.0), deformable_iterations=(30, 30),
                                    diffusive_alpha_vox2=1.0)
    before, after, result = _recovery(settings)
    assert after < 0.05 * before
    centre = result.field_mm[0, :, 10, 10, 10].numpy()
    np.testing.assert_allclose(centre, [2.0, -2.0, 1.0], atol=0.5)


def test_diffeomorphic_mode_and_gaussian_regulariser_also_converge_without_folding():
    base = RegistrationSettings(deformable_levels_mm=(4.0, 0.0), deformable_iterations=(30, 30))
    for settings in (replace(base, diffeomorphic=True),
                     replace(base, diffeomorphic=True, diffeomorphic_update="compositive"),
                     replace(base, regulariser="gaussian", gaussian_sigma_mm=2.0),
                     replace(base, force="ncc")):
        before, after, result = _recovery(settings)
        assert after < 0.2 * before, settings
        assert float(jacobian_determinant(result.field_mm, (2.0,) * 3).min()) > 0


def test_batched_deformable_equals_one_by_one():
    shape, spacing = (16, 16, 16), 2.0
    fixed = _blobs(shape, spacing)
    moving = torch.cat([_blobs(shape, spacing, (2.0, 0.0, -2.0)), _blobs(shape, spacing, (-1.0, 2.0, 1.0))])
    identity = fixed_normaliser(shape, spacing, "cpu")[None].expand(2, 4, 4).contiguous()
    weights = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    settings = RegistrationSettings(deformable_levels_mm=(4.0, 0.0), deformable_iterations=(15, 10),
                                    stop_no_new_minimum_iterations=3, stop_line_fit_iterations=5)
    together = register_deformable(fixed, moving, weights, identity, spacing, settings)
    alone = [register_deformable(fixed, moving[i:i + 1], weights[i:i + 1], identity[i:i + 1], spacing, settings)
             for i in range(2)]
    np.testing.assert_allclose(together.field_mm.numpy(), torch.cat([a.field_mm for a in alone]).numpy(), atol=1e-4)
    assert together.iterations == [[a.iterations[k][0] for a in alone] for k in range(2)]
