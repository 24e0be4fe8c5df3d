"""How cache volumes are shown to people: station colours, and 2D slices oriented as radiologists read them.

Station colours are Kelly's maximum-contrast set in catalogue order, so each left/right pair (adjacent in the
catalogue) gets two unrelated hues (matplotlib's tab20 gives a pair two shades of one hue). Slices follow the
radiological convention: axial and coronal views show the patient's right on the image's left, axial views
anterior at the top, coronal and sagittal views superior at the top, sagittal views anterior on the left. Letters
come from the grid's direction (LPS frame, `cache.grid`), so a flipped axis is shown flipped back, not mirrored.
Pure numpy (`orientation_marks` only calls the matplotlib axes it is given): the figure code
(evaluate/figures.py, preprocess/register/qa.py) draws with these.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from cache.grid import Grid
from cache.stations import station_names

# Kelly (1965) colours of maximum contrast in his order, without white, black and grey (grey vanishes on CT)
KELLY_RGB = ((243, 195, 0), (135, 86, 146), (243, 132, 0), (161, 202, 241), (190, 0, 50), (194, 178, 128),
             (226, 88, 34), (0, 136, 86), (230, 143, 172), (0, 103, 165), (249, 147, 121), (96, 78, 151),
             (246, 166, 0), (179, 68, 108), (220, 211, 0), (136, 45, 23), (141, 182, 0))
LPS_LETTERS = (("R", "L"), ("A", "P"), ("I", "S"))  # (negative end, positive end) of the x, y, z world axes
View = Literal["axial", "coronal", "sagittal"]
SLICE_AXIS = {"axial": 0, "coronal": 1, "sagittal": 2}  # array axis (z, y, x) held fixed by each view
# wanted (left, right) and (top, bottom) letters of each view
WANTED = {"axial": (("R", "L"), ("A", "P")), "coronal": (("R", "L"), ("S", "I")), "sagittal": (("A", "P"), ("S", "I"))}


def station_colours() -> dict[str, tuple[int, int, int]]:
    """Station name -> RGB 0-255, one Kelly colour per station in catalogue order."""
    return dict(zip(station_names(), KELLY_RGB, strict=True))


def axis_letters(grid: Grid, array_axis: int) -> tuple[str, str]:
    """(letter at index 0, letter at the last index) of array axis 0, 1 or 2 (z, y, x): the world axis its
    direction is closest to."""
    vector = grid.direction_matrix[:, 2 - array_axis]
    world = int(np.argmax(np.abs(vector)))
    negative, positive = LPS_LETTERS[world]
    return (negative, positive) if vector[world] > 0 else (positive, negative)


@dataclass(frozen=True)
class SliceView:
    """A 2D slice ready for `imshow(image, extent=extent_mm)`: `image` (rows, columns) in display order;
    `extent_mm` (left, right, bottom, top) so that pixels keep their physical aspect; `letters` (left, right,
    top, bottom) patient directions at the image's edges; `position_mm` the slice's world coordinate along the
    axis it cuts (e.g. S for an axial slice: 'z 102.5 mm')."""

    image: np.ndarray
    extent_mm: tuple[float, float, float, float]
    letters: tuple[str, str, str, str]
    position_mm: float
    position_axis: str  # world axis of `position_mm`: x, y or z

    @property
    def position_text(self) -> str:
        return f"{self.position_axis} {self.position_mm:.1f} mm"


def slice_view(volume_zyx: np.ndarray, grid: Grid, view: View, index: int) -> SliceView:
    """Slice `index` of `volume_zyx` along the view's axis, flipped into the radiological display orientation."""
    axis = SLICE_AXIS[view]
    rows_axis, cols_axis = [a for a in range(3) if a != axis]  # array axes left in the slice, in order
    image = np.take(volume_zyx, index, axis=axis)
    wanted_lr, wanted_tb = WANTED[view]
    # put the in-plane axis whose letters match the wanted horizontal pair on the columns
    row_letters, col_letters = axis_letters(grid, rows_axis), axis_letters(grid, cols_axis)
    if set(row_letters) == set(wanted_lr) and set(col_letters) != set(wanted_lr):
        image, rows_axis, cols_axis = image.T, cols_axis, rows_axis
        row_letters, col_letters = col_letters, row_letters
    if col_letters == wanted_lr[::-1]:
        image, col_letters = image[:, ::-1], col_letters[::-1]
    if row_letters == wanted_tb[::-1]:
        image, row_letters = image[::-1], row_letters[::-1]
    spacing_zyx = grid.spacing_mm[::-1]
    width, height = image.shape[1] * spacing_zyx[cols_axis], image.shape[0] * spacing_zyx[rows_axis]
    centre = (np.asarray(volume_zyx.shape, dtype=float) - 1) / 2
    centre[axis] = index
    world = int(np.argmax(np.abs(grid.direction_matrix[:, 2 - axis])))
    position = float(grid.index_to_physical(centre)[world])
    return SliceView(np.ascontiguousarray(image), (0.0, width, height, 0.0),
                     (col_letters[0], col_letters[1], row_letters[0], row_letters[1]), position, "xyz"[world])


def station_slices(labels_zyx: np.ndarray, view: View, n_slices: int) -> list[int]:
    """Up to `n_slices` slice indices along the view's axis, spread over the station-bearing range, each the
    slice with the most station voxels of its share."""
    axis = SLICE_AXIS[view]
    per_slice = np.count_nonzero(np.moveaxis(labels_zyx, axis, 0).reshape(labels_zyx.shape[axis], -1), axis=1)
    bearing = np.flatnonzero(per_slice)
    if bearing.size == 0:
        return [labels_zyx.shape[axis] // 2]
    chunks = np.array_split(bearing, min(n_slices, bearing.size))
    return [int(chunk[np.argmax(per_slice[chunk])]) for chunk in chunks]


def orientation_marks(ax, view: SliceView, colour: str = "yellow", fontsize: float = 10) -> None:
    """Write the patient letters at the middle of each edge of a matplotlib axes showing `view`."""
    left, right, top, bottom = view.letters
    style = {"color": colour, "fontsize": fontsize, "fontweight": "bold", "transform": ax.transAxes}
    for x, y, letter, ha, va in ((0.02, 0.5, left, "left", "center"), (0.98, 0.5, right, "right", "center"),
                                 (0.5, 0.98, top, "center", "top"), (0.5, 0.02, bottom, "center", "bottom")):
        ax.text(x, y, letter, ha=ha, va=va, **style)
