"""The phantom's DICOM PET writer and our SUV reader agree: DICOM PET -> SUV equals the phantom's SUV volume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.phantom.dicom_pet import decode_slices, draw_acquisition, encode_slices, write_pet_series
from preprocess.suv import read_suv_series


def test_phantom_dicom_pet_converts_to_the_phantom_suv(tmp_path: Path):
    rng = np.random.default_rng(7)
    suv = rng.gamma(2.0, 0.8, size=(6, 9, 11)).astype(np.float32)
    suv[2, 4, 5] = 14.0  # a hot node
    grid = Grid(suv.shape, (4.0, 4.0, 3.0), (-21.0, -17.5, -640.0))
    acquisition = draw_acquisition(rng, day=3)
    stored, slopes = encode_slices(suv, acquisition)
    write_pet_series(tmp_path / "pet", stored, slopes, grid, acquisition, patient_id="PHANTOM-007", uid_seed="t")
    phantom_suv = decode_slices(stored, slopes, acquisition)
    image, provenance = read_suv_series(tmp_path / "pet")
    converted = sitk.GetArrayFromImage(image)
    np.testing.assert_allclose(converted, phantom_suv, rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(converted, suv, rtol=1e-3, atol=2e-3 * suv.max())  # int16 quantisation
    assert Grid.from_sitk(image).origin_mm == grid.origin_mm
    assert "SeriesDate/SeriesTime" in provenance.rules[0]
