"""CT intensities (HU) of a simulated scan: tissue values, nodes and tumour, partial volume and noise."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from preprocess.phantom.anatomy import PARTS, TISSUES

TISSUE_HU = {
    "air": -1000.0, "fat": -100.0, "muscle": 45.0, "lung": -850.0, "liver": 58.0, "abdomen": 35.0,
    "myocardium": 45.0, "blood": 40.0, "esophagus": 40.0, "airway_wall": 30.0, "airway": -1000.0, "cord": 32.0,
    "vertebra": 320.0, "cortical_bone": 850.0,
}
HILUM_HU = -90.0
NECROSIS_HU = 12.0
PART_HU = np.array([TISSUE_HU[p.tissue] for p in PARTS], dtype=np.float32)
assert set(TISSUE_HU) == set(TISSUES)


def ct_image(hu: np.ndarray, spacing_mm: float, rng: np.random.Generator, noise_hu: float) -> np.ndarray:
    """int16 HU after partial-volume blur (0.7 mm) and Gaussian noise, from painted float32 HU values."""
    blurred = ndimage.gaussian_filter(hu, sigma=max(0.7 / spacing_mm, 0.35), truncate=3.0)
    blurred += noise_hu * rng.standard_normal(hu.shape, dtype=np.float32)
    return np.clip(np.rint(blurred), -1024, 3071).astype(np.int16)
