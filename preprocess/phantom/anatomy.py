"""The canonical thorax: analytic organs rasterised once in a fixed frame, warped per patient later.

Frame: millimetres, x towards the patient's left, y posterior, z cranial (LPS, as ITK), origin at the carina.
The result is a map of *parts* (uint8): each part has a tissue (for CT and PET values) and, where
TotalSegmentator v2 has one, a structure name. The pulmonary arteries and lobar bronchi are drawn but have no
TotalSegmentator v2 label (v2 'total' has none), as in real v2 output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from preprocess.phantom.shapes import Canvas, ellipsoid, paint, rounded_box, tube
from preprocess.phantom.station_regions import draw_station_regions

TISSUES = ("air", "fat", "muscle", "lung", "liver", "abdomen", "myocardium", "blood", "esophagus",
           "airway_wall", "airway", "cord", "vertebra", "cortical_bone")

# Canonical extent (x, y, z) in mm: larger than any patient field of view, so warped grids stay inside.
TEMPLATE_LO_MM = (-185.0, -150.0, -175.0)
TEMPLATE_HI_MM = (185.0, 150.0, 150.0)
TRACHEA_SLOPE = -0.18  # trachea centre y = slope * z above the carina (it runs forward as it rises)
VERTEBRA_HEIGHT_MM = 24.0


@dataclass(frozen=True)
class Part:
    name: str
    tissue: str
    totalseg: str | None


def _vertebra_levels() -> list[tuple[str, float]]:
    """(name, centre z) of the vertebrae in the frame: the T4/T5 disc lies at the carina."""
    names = ["C7"] + [f"T{k}" for k in range(1, 13)]
    return [(name, VERTEBRA_HEIGHT_MM * (4.5 - k) + 0.0) for k, name in enumerate(names)]


def _build_parts() -> tuple[Part, ...]:
    parts = [
        Part("outside", "air", None), Part("subcutaneous_fat", "fat", None), Part("muscle", "muscle", None),
        Part("lung", "lung", None),
        Part("lung_upper_lobe_right", "lung", "lung_upper_lobe_right"),
        Part("lung_middle_lobe_right", "lung", "lung_middle_lobe_right"),
        Part("lung_lower_lobe_right", "lung", "lung_lower_lobe_right"),
        Part("lung_upper_lobe_left", "lung", "lung_upper_lobe_left"),
        Part("lung_lower_lobe_left", "lung", "lung_lower_lobe_left"),
        Part("mediastinal_fat", "fat", None), Part("liver", "liver", "liver"), Part("abdomen", "abdomen", None),
        Part("heart_wall", "myocardium", "heart"), Part("heart_blood", "blood", "heart"),
        Part("aorta", "blood", "aorta"), Part("pulmonary_artery", "blood", None),
        Part("pulmonary_vein", "blood", "pulmonary_vein"), Part("superior_vena_cava", "blood", "superior_vena_cava"),
        Part("brachiocephalic_vein_left", "blood", "brachiocephalic_vein_left"),
        Part("brachiocephalic_vein_right", "blood", "brachiocephalic_vein_right"),
        Part("brachiocephalic_trunk", "blood", "brachiocephalic_trunk"),
        Part("common_carotid_artery_left", "blood", "common_carotid_artery_left"),
        Part("common_carotid_artery_right", "blood", "common_carotid_artery_right"),
        Part("subclavian_artery_left", "blood", "subclavian_artery_left"),
        Part("subclavian_artery_right", "blood", "subclavian_artery_right"),
        Part("esophagus", "esophagus", "esophagus"), Part("trachea_wall", "airway_wall", "trachea"),
        Part("trachea_lumen", "airway", "trachea"), Part("lobar_bronchus", "airway", None),
        Part("spinal_cord", "cord", "spinal_cord"), Part("sternum", "cortical_bone", "sternum"),
        Part("clavicula_left", "cortical_bone", "clavicula_left"),
        Part("clavicula_right", "cortical_bone", "clavicula_right"),
    ]
    parts += [Part(f"vertebrae_{name}", "vertebra", f"vertebrae_{name}") for name, _ in _vertebra_levels()]
    parts += [Part(f"rib_{side}_{k}", "cortical_bone", f"rib_{side}_{k}") for side in ("left", "right")
              for k in range(1, 13)]
    return tuple(parts)


PARTS = _build_parts()
PART = {part.name: code for code, part in enumerate(PARTS)}
LUNG_PARTS = tuple(PART[p.name] for p in PARTS if p.tissue == "lung")
# Parts a lymph node may displace (soft tissue around the organs), and parts nothing else is painted over.
SOFT_PARTS = (PART["mediastinal_fat"], PART["subcutaneous_fat"], PART["muscle"]) + LUNG_PARTS


@dataclass(frozen=True)
class Template:
    """The canonical thorax on `canvas`: part codes and true station codes (1..17), both uint8 (z, y, x)."""

    canvas: Canvas
    parts: np.ndarray
    stations: np.ndarray


def cavity_scale(z: np.ndarray) -> np.ndarray:
    """Width factor of the chest cavity: 1 low in the chest, narrowing towards the lung apices."""
    return 1.0 - 0.45 * np.clip((z - 40.0) / 85.0, 0.0, 1.0) ** 1.5


def diaphragm_z(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Height of the diaphragm domes (the right dome higher), lower laterally and posteriorly."""
    right = -92.0 - 0.006 * (x + 55.0) ** 2 - 0.003 * (y + 10.0) ** 2
    left = -102.0 - 0.006 * (x - 55.0) ** 2 - 0.003 * (y + 10.0) ** 2
    w = 1.0 / (1.0 + np.exp(x / 15.0))
    return w * right + (1.0 - w) * left


def _draw_trunk(canvas: Canvas, parts: np.ndarray) -> None:
    """Body wall, chest cavity (as generic lung for now), diaphragm with liver and abdomen below."""
    box, z, y, x = canvas.box(TEMPLATE_LO_MM, TEMPLATE_HI_MM)
    body = (x / 150.0) ** 2 + (y / 110.0) ** 2 <= 1.0
    inner = (x / 132.0) ** 2 + ((y - 2.0) / 94.0) ** 2 <= 1.0
    s = cavity_scale(z)
    cavity = (x / (118.0 * s)) ** 2 + ((y - 5.0) / (80.0 * s)) ** 2 <= 1.0
    below = z < diaphragm_z(x, y)
    paint(parts, box, body, PART["subcutaneous_fat"])
    paint(parts, box, inner, PART["muscle"])
    paint(parts, box, cavity & ~below & (z < 128.0), PART["lung"])
    paint(parts, box, inner & below & (x < 30.0), PART["liver"])
    paint(parts, box, inner & below & (x >= 30.0), PART["abdomen"])


def _aortic_arch() -> np.ndarray:
    t = np.linspace(0.0, np.pi, 13)
    return np.stack([8.0 + 18.0 * np.sin(t) - 12.0 * np.cos(t), -34.0 * np.cos(t), 12.0 + 26.0 * np.sin(t)], axis=1)


VESSELS = {  # part: (polyline (x, y, z) mm, radii mm)
    "superior_vena_cava": ([(-28, -28, 62), (-28, -26, -42)], [10, 10]),
    "brachiocephalic_vein_left": ([(75, -45, 100), (30, -50, 80), (-5, -45, 66), (-26, -30, 60)], [7, 7, 7, 8]),
    "brachiocephalic_vein_right": ([(-60, -30, 112), (-35, -28, 82), (-28, -28, 62)], [7, 7, 8]),
    "brachiocephalic_trunk": ([(2, -26, 34), (-12, -30, 70), (-18, -27, 88)], [7, 7, 6]),
    "subclavian_artery_right": ([(-18, -27, 88), (-50, -12, 100), (-95, 5, 110)], [5, 5, 5]),
    "common_carotid_artery_right": ([(-18, -27, 88), (-24, -25, 150)], [4.5, 4.5]),
    "common_carotid_artery_left": ([(12, -20, 38), (16, -18, 80), (20, -12, 150)], [4.5, 4.5, 4.5]),
    "subclavian_artery_left": ([(26, 0, 42), (32, 5, 80), (55, 10, 100), (95, 10, 112)], [5.5, 5.5, 5, 5]),
    "pulmonary_artery": None,  # drawn from PULMONARY_ARTERIES below (a tree)
    "pulmonary_vein": None,
}
PULMONARY_ARTERIES = [
    ([(26, -46, -52), (26, -28, -22)], [13, 13]),
    ([(26, -28, -22), (40, -12, -20), (58, 0, -28), (74, 8, -42)], [11, 10, 8, 6]),
    ([(26, -28, -22), (5, -8, -30), (-20, -6, -30), (-45, -3, -34), (-64, 2, -44)], [11, 10, 9, 8, 6]),
]
PULMONARY_VEINS = [
    ([(-62, 8, -48), (-25, 10, -56), (-8, 10, -64)], [6, 6, 6]),
    ([(-58, 16, -72), (-8, 12, -74)], [6, 6]),
    ([(62, 12, -46), (28, 10, -60)], [6, 6]),
    ([(60, 18, -70), (28, 12, -74)], [6, 6]),
]
AORTA = ([(-2, -30, -48), (-4, -35, -10), *_aortic_arch().tolist(), (22, 38, -40), (16, 40, -175)],
         [15, 15] + [14] * 13 + [12, 11])
ESOPHAGUS = ([(0, -5, 150), (1, 15, 20), (0, 20, -10), (2, 23, -60), (8, 22, -120), (14, 15, -175)], 8)
TRACHEA = [(-1, 150 * TRACHEA_SLOPE, 150), (-1, 0, 4), (0, 2, 0)]
BRONCHI = [([(0, 2, 0), (-22, 6, -14), (-42, 10, -28)], 7.0, 5.5),  # right main bronchus
           ([(0, 2, 0), (25, 8, -20), (45, 12, -38)], 6.0, 4.5)]  # left main bronchus
LOBAR_BRONCHI = [([(-42, 10, -28), (-52, 8, -20), (-62, 6, -14)], 4.0), ([(-42, 10, -28), (-58, 14, -50)], 4.5),
                 ([(45, 12, -38), (60, 10, -24)], 4.0), ([(45, 12, -38), (64, 16, -58)], 4.0)]


def _draw_tubes(canvas: Canvas, parts: np.ndarray, part: str, tubes, only_on=None) -> None:
    for points, radii in tubes:
        for box, inside in tube(canvas, points, radii):
            paint(parts, box, inside, PART[part], only_on)


def _mediastinal_organs(inflate_mm: float = 0.0) -> list[tuple[str, list]]:
    """Tube organs of the mediastinum as (part, [(polyline, radii)]), radii grown by `inflate_mm`."""
    def grown(tubes):
        return [(points, np.asarray(radii, np.float32) + inflate_mm) for points, radii in tubes]

    organs = [(name, [spec]) for name, spec in VESSELS.items() if spec is not None]
    organs += [("pulmonary_artery", PULMONARY_ARTERIES), ("pulmonary_vein", PULMONARY_VEINS),
               ("aorta", [AORTA]), ("esophagus", [ESOPHAGUS]), ("trachea_wall", [(TRACHEA, 9.5)])]
    organs += [("trachea_wall", [(points, outer)]) for points, outer, _ in BRONCHI]
    return [(name, grown(tubes)) for name, tubes in organs]


def _draw_mediastinum(canvas: Canvas, parts: np.ndarray, stations: np.ndarray) -> None:
    """Mediastinal fat (a central column, a sleeve around every organ, the station regions), then the organs."""
    lung = [PART["lung"]]
    fat = PART["mediastinal_fat"]
    box, inside = rounded_box(canvas, (-24, -72, -60), (28, 60, 128))
    paint(parts, box, inside, fat, lung)
    heart_c, heart_a = np.array([15, -22, -78]), np.array([55, 45, 46])
    paint(parts, *ellipsoid(canvas, heart_c, heart_a + 5), fat, lung)
    for _, tubes in _mediastinal_organs(inflate_mm=4.0):
        _draw_tubes(canvas, parts, "mediastinal_fat", tubes, lung)
    region = stations > 0
    parts[region & (parts == PART["lung"])] = fat
    paint(parts, *ellipsoid(canvas, heart_c, heart_a), PART["heart_wall"])
    paint(parts, *ellipsoid(canvas, heart_c + (2, 3, 2), heart_a - 9), PART["heart_blood"])
    for name, tubes in _mediastinal_organs():
        _draw_tubes(canvas, parts, name, tubes)
    for points, _, lumen in BRONCHI:
        _draw_tubes(canvas, parts, "trachea_lumen", [(points, lumen)])
    _draw_tubes(canvas, parts, "trachea_lumen", [(TRACHEA, 7.5)])
    for points, radius in LOBAR_BRONCHI:
        _draw_tubes(canvas, parts, "lobar_bronchus", [(points, radius)], (PART["lung"], fat))


def _draw_spine(canvas: Canvas, parts: np.ndarray) -> None:
    for name, zc in _vertebra_levels():
        half = VERTEBRA_HEIGHT_MM / 2
        code = PART[f"vertebrae_{name}"]
        paint(parts, *ellipsoid(canvas, (0, 60, zc), (17, 15, half - 2)), code)
        paint(parts, *rounded_box(canvas, (-14, 78, zc - half + 3), (14, 98, zc + half - 3)), code)
        paint(parts, *rounded_box(canvas, (-36, 80, zc - 6), (36, 90, zc + 6)), code)
        paint(parts, *rounded_box(canvas, (-4, 95, zc - 8), (4, 106, zc + 6)), code)
    for box, inside in tube(canvas, [(0, 88, TEMPLATE_HI_MM[2]), (0, 88, TEMPLATE_LO_MM[2])], 8.0):
        paint(parts, box, inside, PART["mediastinal_fat"])
    for box, inside in tube(canvas, [(0, 88, TEMPLATE_HI_MM[2]), (0, 88, TEMPLATE_LO_MM[2])], 5.0):
        paint(parts, box, inside, PART["spinal_cord"])


def _draw_ribs(canvas: Canvas, parts: np.ndarray) -> None:
    """Ribs as bands on a shell just outside the cavity, leaving the spine at their vertebra, sloping forward."""
    box, z, y, x = canvas.box((-140, -100, -170), (140, 100, 110))
    s = cavity_scale(z)
    rho = np.sqrt((x / (118.0 * s)) ** 2 + ((y - 5.0) / (80.0 * s)) ** 2)
    theta = np.arccos(np.clip((y - 5.0) / (80.0 * s) / np.maximum(rho, 1e-6), -1.0, 1.0))  # 0 at the back
    drop = 55.0 * (1.0 - np.cos(theta)) / 2.0
    shell = (rho >= 1.02) & (rho <= 1.02 + 8.0 / (80.0 * s)) & (theta > 0.45) & (theta < 2.5)
    levels = dict(_vertebra_levels())
    for k in range(1, 13):
        zk = levels[f"T{k}"] - drop
        band = shell & (np.abs(z - zk) <= 5.0)
        paint(parts, box, band & (x > 0), PART[f"rib_left_{k}"])
        paint(parts, box, band & (x <= 0), PART[f"rib_right_{k}"])


def _draw_sternum_clavicles(canvas: Canvas, parts: np.ndarray) -> None:
    paint(parts, *rounded_box(canvas, (-25, -92, 44), (25, -80, 72)), PART["sternum"])
    paint(parts, *rounded_box(canvas, (-14, -94, -82), (14, -82, 44)), PART["sternum"])
    for sign, side in ((1, "left"), (-1, "right")):
        points = [(sign * 20, -84, 80), (sign * 60, -78, 95), (sign * 115, -55, 106)]
        _draw_tubes(canvas, parts, f"clavicula_{side}", [(points, 7.0)])


def _split_lobes(canvas: Canvas, parts: np.ndarray) -> None:
    """Generic lung -> lobes: oblique fissures (lower lobes behind/below), a horizontal fissure on the right."""
    box, z, y, x = canvas.box(TEMPLATE_LO_MM, TEMPLATE_HI_MM)
    lung = parts == PART["lung"]
    lower = z < -100.0 + 1.2 * (y + 40.0)
    right = x < 0
    parts[lung & right & lower] = PART["lung_lower_lobe_right"]
    parts[lung & right & ~lower & (z < -30.0)] = PART["lung_middle_lobe_right"]
    parts[lung & right & ~lower & (z >= -30.0)] = PART["lung_upper_lobe_right"]
    parts[lung & ~right & lower] = PART["lung_lower_lobe_left"]
    parts[lung & ~right & ~lower] = PART["lung_upper_lobe_left"]


@functools.lru_cache(maxsize=2)
def draw_template(spacing_mm: float) -> Template:
    """The canonical thorax at `spacing_mm` (parts and true stations); cached per process."""
    lo, hi = np.asarray(TEMPLATE_LO_MM), np.asarray(TEMPLATE_HI_MM)
    shape = tuple(int(v) for v in (np.floor((hi - lo) / spacing_mm) + 1)[::-1])
    canvas = Canvas(shape, float(spacing_mm), tuple(float(v) for v in lo))
    parts = np.zeros(shape, dtype=np.uint8)
    stations = draw_station_regions(canvas)
    _draw_trunk(canvas, parts)
    _draw_mediastinum(canvas, parts, stations)
    _draw_spine(canvas, parts)
    _draw_ribs(canvas, parts)
    _draw_sternum_clavicles(canvas, parts)
    _split_lobes(canvas, parts)
    stations[parts != PART["mediastinal_fat"]] = 0
    parts.setflags(write=False)
    stations.setflags(write=False)
    return Template(canvas, parts, stations)
