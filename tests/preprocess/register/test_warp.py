import numpy as np
import torch

from preprocess.register.warp import (
    OneHotLabels,
    channels_last,
    compose,
    compose_torch,
    index_to_normalised,
    pool_to,
    warp_channels_last,
    warp_labels,
    warp_labels_argmax,
    warp_labels_torch,
    warp_through,
    warp_through_torch,
)


def _identity(shape, spacing, n=1):
    return torch.as_tensor(index_to_normalised(shape) @ np.diag([1 / spacing] * 3 + [1.0]),
                           dtype=torch.float32).expand(n, 4, 4).contiguous()


def test_identity_transform_and_zero_field_give_the_image_back():
    shape, spacing = (7, 8, 9), 2.0
    image = torch.rand(2, 3, *shape)
    matrices = _identity(shape, spacing, 2)
    zero = torch.zeros(2, 3, *shape)
    for warped in (warp_through(image, matrices, shape, shape, spacing, zero),
                   warp_through_torch(image, matrices, shape, shape, spacing, zero)):
        np.testing.assert_allclose(warped.numpy(), image.numpy(), atol=1e-5)


def test_cpu_kernel_equals_grid_sample_for_affine_plus_field():
    g = torch.Generator().manual_seed(1)
    full, level, padded, spacing = (12, 10, 11), (6, 5, 6), (13, 11, 12), 2.0
    matrices = _identity(padded, spacing, 3).clone()
    matrices[:, :3, :3] += 0.02 * torch.randn(3, 3, 3, generator=g)
    matrices[:, :3, 3] += 0.05 * torch.randn(3, 3, generator=g)
    moving = pool_to(torch.rand(3, 4, *padded, generator=g), (7, 6, 6))
    field = 3.0 * torch.randn(3, 3, *level, generator=g)
    np.testing.assert_allclose(warp_through(moving, matrices, full, level, spacing, field).numpy(),
                               warp_through_torch(moving, matrices, full, level, spacing, field).numpy(), atol=1e-5)


def test_a_field_of_one_voxel_shifts_the_image_by_one_voxel():
    shape, spacing = (6, 6, 6), 3.0
    image = torch.arange(216, dtype=torch.float32).reshape(1, 1, *shape)
    field = torch.zeros(1, 3, *shape)
    field[:, 2] = spacing  # +1 voxel along x
    warped = warp_through(image, _identity(shape, spacing), shape, shape, spacing, field)
    np.testing.assert_allclose(warped[0, 0, :, :, :-1].numpy(), image[0, 0, :, :, 1:].numpy(), rtol=1e-5)
    assert float(warped[0, 0, :, :, -1].abs().max()) < float(image.max())  # outside: half zero


def test_composition_of_two_constant_shifts_adds_them():
    shape, spacing = (5, 5, 5), 2.0
    a = torch.zeros(1, 3, *shape)
    a[:, 0] = 1.0
    b = torch.zeros(1, 3, *shape)
    b[:, 1] = -0.5
    composed = compose(a, b, shape, spacing)
    np.testing.assert_allclose(composed[:, 0].numpy(), 1.0)
    np.testing.assert_allclose(composed[:, 1, :-1].numpy(), -0.5, atol=1e-6)  # last z plane samples outside


def test_cpu_composition_kernel_equals_grid_sample_composition():
    g = torch.Generator().manual_seed(3)
    full, level = (12, 10, 14), (6, 5, 7)
    a, b = 3.0 * torch.randn(2, 3, *level, generator=g), 3.0 * torch.randn(2, 3, *level, generator=g)
    np.testing.assert_allclose(compose(a, b, full, 2.0).numpy(), compose_torch(a, b, full, 2.0).numpy(), atol=1e-5)


def test_warped_labels_keep_their_codes_under_identity():
    labels = np.zeros((6, 7, 8), dtype=np.uint8)
    labels[1:3, 2:5, 3:6] = 4
    labels[4, 1, 1] = 2
    for device in ("cpu",):
        probabilities = warp_labels(labels, 5, _identity(labels.shape, 2.0), labels.shape, 2.0, None,
                                    torch.device(device))
        np.testing.assert_array_equal(probabilities.argmax(1).reshape(labels.shape).numpy(), labels)
        np.testing.assert_allclose(probabilities.sum(1).numpy(), 1.0, atol=1e-6)


def _labels_and_transform(seed: int, n: int = 1, shift: float = 0.1):
    """Random labels (codes 0..5) and an identity matrix (n, 4, 4) perturbed at random, for the label warps."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 6, (9, 8, 10), generator=g).to(torch.uint8).numpy()
    matrix = _identity(labels.shape, 2.0, n).clone()
    matrix[:, :3, :3] += 0.03 * torch.randn(n, 3, 3, generator=g)
    matrix[:, :3, 3] += shift * torch.randn(n, 3, generator=g)
    return labels, matrix, g


def test_label_kernel_equals_warped_one_hot_channels():
    labels, matrix, g = _labels_and_transform(4)
    full, level = (8, 9, 9), (4, 5, 4)
    field = 2.0 * torch.randn(1, 3, *level, generator=g)
    a = warp_labels(labels, 5, matrix, full, 2.0, field, torch.device("cpu"), level)
    b = warp_labels_torch(labels, 5, matrix, full, 2.0, field, torch.device("cpu"), level)
    np.testing.assert_allclose(a.numpy(), b.numpy(), atol=1e-5)


def test_label_argmax_kernel_equals_the_argmax_of_the_warped_probabilities():
    labels, matrix, g = _labels_and_transform(5)
    full, level = (8, 9, 9), (4, 5, 4)
    for field, shape in ((2.0 * torch.randn(1, 3, *level, generator=g), level), (None, full)):
        probabilities = warp_labels(labels, 5, matrix, full, 2.0, field, torch.device("cpu"), shape)
        argmax = warp_labels_argmax(labels, 5, matrix, full, 2.0, field, torch.device("cpu"), shape)
        assert argmax.dtype == torch.uint8
        np.testing.assert_array_equal(argmax.numpy(), probabilities.argmax(1).numpy())
    # half a voxel along x: two codes at about 0.5 each
    shifted = _identity(labels.shape, 2.0).clone()
    shifted[:, 2, 3] += float(index_to_normalised(labels.shape)[2, 2]) * 0.5
    probabilities = warp_labels(labels, 5, shifted, labels.shape, 2.0, None, torch.device("cpu"))
    argmax = warp_labels_argmax(labels, 5, shifted, labels.shape, 2.0, None, torch.device("cpu"))
    assert ((probabilities.max(1).values - 0.5).abs() < 1e-6).any()  # near-ties: the same rounding decides
    np.testing.assert_array_equal(argmax.numpy(), probabilities.argmax(1).numpy())


def test_one_hot_labels_warp_bit_for_bit_as_their_float_channels():
    g = torch.Generator().manual_seed(6)
    labels = torch.randint(0, 7, (2, 9, 8, 10), generator=g).to(torch.uint8)
    codes = np.array([3, 1, 6, 2], dtype=np.int64)  # a subset, out of order
    channels = channels_last(torch.stack([(labels == int(k)).float() for k in codes], dim=1))
    full, level = (9, 8, 10), (9, 8, 10)
    matrices = _identity(labels.shape[1:], 2.0, n=2).clone()
    matrices[:, :3, :3] += 0.03 * torch.randn(2, 3, 3, generator=g)
    matrices[:, :3, 3] += 0.2 * torch.randn(2, 3, generator=g)  # some samples fall outside: the edge branch too
    for field in (2.0 * torch.randn(2, 3, *level, generator=g), None):
        a = warp_channels_last(OneHotLabels(labels.numpy(), codes), matrices, full, level, 2.0, field)
        b = warp_channels_last(channels, matrices, full, level, 2.0, field)
        np.testing.assert_array_equal(a, b)
    shared = warp_channels_last(OneHotLabels(labels[:1].numpy(), codes), matrices, full, level, 2.0, None)
    np.testing.assert_array_equal(shared, warp_channels_last(channels[:1], matrices, full, level, 2.0, None))
