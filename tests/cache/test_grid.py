"""Grid geometry agrees with SimpleITK's own index <-> physical transforms and round-trips."""

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid


def test_grid_matches_simpleitk_transforms():
    image = sitk.Image(7, 5, 3, sitk.sitkInt16)  # size (x, y, z)
    image.SetSpacing((0.8, 1.1, 2.5))
    image.SetOrigin((-10.0, 4.0, 30.0))
    rotation = sitk.VersorTransform((0.2, 0.1, 1.0), 0.3).GetMatrix()
    image.SetDirection(rotation)
    grid = Grid.from_sitk(image)
    assert grid.shape_zyx == (3, 5, 7)
    index_zyx = np.array([2, 4, 6])
    expected = image.TransformIndexToPhysicalPoint((6, 4, 2))
    assert np.allclose(grid.index_to_physical(index_zyx), expected)
    assert np.allclose(grid.physical_to_index(np.array(expected)), index_zyx)
    copy = sitk.GetImageFromArray(np.zeros(grid.shape_zyx, np.int16))
    grid.apply_to_sitk(copy)
    assert Grid.from_sitk(copy) == grid
    assert Grid.from_attrs(grid.shape_zyx, grid.to_attrs()) == grid
