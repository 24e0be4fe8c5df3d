"""The 17 lymph node stations as regions of the canonical thorax, placed relative to its landmarks.

Each station is a rounded box (IASLC borders simplified) given in the frame of `anatomy`: x to the patient's
left, y posterior, z cranial, carina at the origin. Stations beside the trachea (1, 2, 3P, 4) use y' = y + 0.18 z,
which follows the trachea as it runs forward with height, so "anterior/posterior to the trachea" holds at every
level. Boxes are painted in priority order without overwriting; `anatomy` then removes every voxel that is not
mediastinal fat (organs, airways, lung), so stations never overlap organs or each other.
"""

from __future__ import annotations

import numpy as np

from cache.stations import station
from preprocess.phantom.shapes import Canvas, paint, rounded_box

TRACHEAL_SHEAR = 0.18

# name: list of (lo (x, y, z), hi (x, y, z), sheared) boxes, in painting priority order.
STATION_BOXES: dict[str, list[tuple[tuple[float, float, float], tuple[float, float, float], bool]]] = {
    "7": [((-16, -6, -46), (20, 24, -4), False)],
    "4R": [((-36, -28, -4), (8, 8, 56), True)],
    "4L": [((8, -18, -8), (26, 14, 50), True)],
    "10R": [((-54, -14, -42), (-18, 26, -4), False)],
    "10L": [((22, -8, -48), (58, 30, -12), False)],
    "11R": [((-78, -12, -68), (-54, 30, -30), False)],
    "11L": [((58, -4, -78), (86, 34, -46), False)],
    "5": [((26, -30, -8), (52, 12, 24), False)],
    "6": [((20, -62, -4), (48, -32, 48), False)],
    "3P": [((-16, 8, 0), (16, 40, 84), True)],
    "3A": [((-32, -73, -24), (20, -44, 70), False)],
    "2R": [((-36, -26, 56), (8, 8, 84), True)],
    "2L": [((8, -24, 50), (36, 14, 84), True)],
    "1R": [((-52, -26, 84), (-1, 14, 106), True)],
    "1L": [((-1, -26, 84), (52, 14, 106), True)],
    "8": [((-18, 12, -108), (28, 50, -46), False)],
    "9": [((-62, 10, -116), (-30, 46, -76), False), ((30, 10, -116), (64, 46, -76), False)],
}


def draw_station_regions(canvas: Canvas) -> np.ndarray:
    """uint8 (z, y, x) map of station codes (1..17) before organs are removed; 0 elsewhere."""
    regions = np.zeros(canvas.shape_zyx, dtype=np.uint8)
    for name, boxes in STATION_BOXES.items():
        code = station(name).code
        for lo, hi, sheared in boxes:
            box, inside = rounded_box(canvas, lo, hi, shear_y_per_z=TRACHEAL_SHEAR if sheared else 0.0)
            paint(regions, box, inside, code, only_on=(0,))
    return regions
