"""Resampling keeps physical geometry: a landmark stays where it is in mm."""

import numpy as np
import pytest
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.resample import isotropic_grid, resample_like, resample_to_spacing


def _oblique_image(size_xyz=(20, 16, 12), spacing=(0.8, 0.8, 2.5), origin=(-10.0, 5.0, 30.0)) -> sitk.Image:
    image = sitk.Image(list(size_xyz), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    angle = np.deg2rad(10)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    image.SetDirection(tuple(rotation.ravel()))
    return image


def _landmark_image(image: sitk.Image, index_xyz) -> sitk.Image:
    image = sitk.Image(image)
    array = np.zeros(image.GetSize()[::-1], dtype=np.float32)
    array[tuple(np.asarray(index_xyz)[::-1])] = 1.0
    out = sitk.GetImageFromArray(array)
    out.CopyInformation(image)
    return out


def _centroid_mm(image: sitk.Image) -> np.ndarray:
    array = sitk.GetArrayViewFromImage(image)
    grid = Grid.from_sitk(image)
    index = np.argwhere(array > 0).astype(np.float64)
    weights = array[array > 0].astype(np.float64)
    return grid.index_to_physical((index * weights[:, None]).sum(0) / weights.sum())


def test_resample_to_spacing_keeps_landmark_position_and_extent():
    image = _landmark_image(_oblique_image(), (8, 6, 5))
    landmark_mm = np.asarray(image.TransformIndexToPhysicalPoint((8, 6, 5)))
    out = resample_to_spacing(image, 0.5, "linear")
    assert out.GetSpacing() == (0.5, 0.5, 0.5)
    assert out.GetDirection() == image.GetDirection()
    assert out.GetSize() == (32, 26, 60)  # 16/0.5, 12.8/0.5, 30/0.5
    # a half-voxel slip would move it by 0.15-1.25 mm; sampling a linear tent costs a few hundredths
    np.testing.assert_allclose(_centroid_mm(out), landmark_mm, atol=0.05)


def test_isotropic_grid_keeps_outer_corner():
    image = _oblique_image()
    size, origin = isotropic_grid(image, 2.0)
    old_corner = np.asarray(image.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)))
    new = sitk.Image(list(size), sitk.sitkUInt8)
    new.SetSpacing((2.0,) * 3)
    new.SetOrigin(origin)
    new.SetDirection(image.GetDirection())
    np.testing.assert_allclose(new.TransformContinuousIndexToPhysicalPoint((-0.5, -0.5, -0.5)), old_corner,
                               atol=1e-9)


def test_resample_like_nearest_keeps_labels_and_position():
    moving = _oblique_image()
    labels = np.zeros(moving.GetSize()[::-1], dtype=np.uint8)
    labels[4:7, 5:9, 6:12] = 7
    label_image = sitk.GetImageFromArray(labels)
    label_image.CopyInformation(moving)
    reference = resample_to_spacing(moving, 1.0, "nearest")
    out = resample_like(label_image, reference, "nearest", 0)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(sitk.GetArrayViewFromImage(out))) == {0, 7}
    np.testing.assert_allclose(_centroid_mm(out), _centroid_mm(label_image), atol=0.6)


def test_unknown_interpolator_is_refused():
    with pytest.raises(ValueError, match="unknown interpolator 'cubic'"):
        resample_to_spacing(_oblique_image(), 1.0, "cubic")
