import numpy as np
import pytest

from cache.display import axis_letters, slice_view, station_colours, station_slices
from cache.grid import Grid

PAIRS = [(f"{n}R", f"{n}L") for n in ("1", "2", "4", "10", "11")]


def test_left_and_right_of_a_pair_get_distinct_colours():
    colours = {name: np.array(rgb, dtype=float) for name, rgb in station_colours().items()}
    assert len({tuple(c) for c in colours.values()}) == 17
    for right, left in PAIRS:
        assert np.linalg.norm(colours[right] - colours[left]) > 100, (right, left)


@pytest.mark.parametrize("view, letters", [("axial", ("R", "L", "A", "P")), ("coronal", ("R", "L", "S", "I")),
                                           ("sagittal", ("A", "P", "S", "I"))])
def test_views_read_radiologically_on_an_lps_grid(view, letters):
    grid = Grid((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 100.0))
    assert axis_letters(grid, 2) == ("R", "L") and axis_letters(grid, 0) == ("I", "S")
    assert slice_view(np.zeros((4, 5, 6)), grid, view, 1).letters == letters


def test_a_flipped_grid_shows_the_same_picture():
    """The same anatomy stored with x running right-to-left is flipped back, so the patient's right stays on the
    image's left; the slice position is the world coordinate, not the index."""
    volume = np.arange(4 * 5 * 6, dtype=float).reshape(4, 5, 6)
    grid = Grid((4, 5, 6), (1.0, 1.0, 2.0), (0.0, 0.0, 100.0))
    flipped = Grid((4, 5, 6), (1.0, 1.0, 2.0), (5.0, 0.0, 100.0), (-1, 0, 0, 0, 1, 0, 0, 0, 1))
    for view, index in (("axial", 3), ("coronal", 2)):
        plain, mirrored = slice_view(volume, grid, view, index), slice_view(volume[:, :, ::-1], flipped, view, index)
        assert np.array_equal(plain.image, mirrored.image)
        assert plain.letters == mirrored.letters
    axial = slice_view(volume, grid, "axial", 3)
    assert axial.position_text == "z 106.0 mm" and axial.extent_mm == (0.0, 6.0, 5.0, 0.0)
    coronal = slice_view(volume, grid, "coronal", 2)
    assert coronal.image[0, 0] == volume[3, 2, 0]  # superior row at the top
    assert coronal.extent_mm == (0.0, 6.0, 8.0, 0.0)  # z rows 2 mm each


def test_station_slices_pick_the_fullest_slice_of_each_share():
    labels = np.zeros((10, 4, 4), dtype=np.uint8)
    labels[2, :2, :2] = 1
    labels[3, :, :] = 1
    labels[7, :1, :1] = 2
    assert station_slices(labels, "axial", 2) == [3, 7]
    assert station_slices(np.zeros((6, 4, 4)), "axial", 3) == [3]
