import math

import torch

from train.augment import (
    AugmentSettings,
    Transforms,
    augment,
    centre_crop,
    identity_transforms,
    random_transforms,
    required_crop_vox,
    rotation_matrices,
    warp,
)


def test_identity_transform_keeps_the_centre_voxel_and_equals_the_centre_crop():
    crops = torch.rand(2, 2, 20, 20, 20)
    crops[:, :, 10, 10, 10] = 5.0  # the sampled centre sits at crop voxel D // 2
    patches = warp(crops, identity_transforms(2), patch_vox=8)
    torch.testing.assert_close(patches, centre_crop(crops, 8), atol=1e-5, rtol=0)
    assert (patches[:, :, 4, 4, 4] == 5.0).all()  # and lands on patch voxel P // 2


def test_known_rotation_maps_a_point_where_the_matrix_says():
    crops = torch.zeros(1, 1, 24, 24, 24)
    crops[0, 0, 12, 12, 12 + 5] = 1.0  # offset (z, y, x) = (0, 0, 5) from the centre
    angle = torch.tensor([[math.pi / 2, 0.0, 0.0]])  # 90 degrees about z
    matrix = rotation_matrices(angle)
    patches = warp(crops, Transforms(matrix, torch.zeros(1, 3, 2, 2, 2)), patch_vox=16)
    # output offset u reads input offset A u, so the point appears at u = A^-1 (0, 0, 5)
    u = torch.linalg.solve(matrix[0], torch.tensor([0.0, 0.0, 5.0])).round().int()
    assert u.abs().tolist() == [0, 5, 0]
    where = torch.nonzero(patches[0, 0] > 0.99)[0] - 8
    assert where.tolist() == u.tolist()


def test_batched_warp_equals_per_sample_warp():
    generator = torch.Generator().manual_seed(3)
    settings = AugmentSettings(rotation_deg=20, scale_fraction=0.1, shear_fraction=0.1, elastic_vox=1.5)
    crops = torch.rand(4, 3, 22, 22, 22)
    transforms = random_transforms(4, settings, generator)
    batched = warp(crops, transforms, patch_vox=8, mask_channel=2)
    for i in range(4):
        one = Transforms(transforms.matrix[i : i + 1], transforms.displacement[i : i + 1])
        torch.testing.assert_close(batched[i : i + 1], warp(crops[i : i + 1], one, 8, mask_channel=2))


def test_augment_is_repeatable_by_generator_seed_and_mask_stays_binary():
    settings = AugmentSettings()
    crops = torch.rand(2, 3, required_crop_vox(8, settings), *(required_crop_vox(8, settings),) * 2)
    a = augment(crops, 8, settings, torch.Generator().manual_seed(1), mask_channel=2)
    b = augment(crops, 8, settings, torch.Generator().manual_seed(1), mask_channel=2)
    torch.testing.assert_close(a, b)
    assert set(a[:, 2].unique().tolist()) <= {0.0, 1.0}
    assert a.shape == (2, 3, 8, 8, 8)


def test_required_crop_covers_the_worst_corner():
    settings = AugmentSettings(rotation_deg=45, scale_fraction=0.2, shear_fraction=0.1, elastic_vox=0)
    crop = required_crop_vox(32, settings)
    corner = torch.full((3,), 16.0)
    stretched = corner.norm() * 1.2 * 1.2
    assert crop / 2 >= stretched
