"""The separable control-field upsampling gives what scipy's zoom gives."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from preprocess.phantom.deformation import _upsample


def test_upsample_matches_ndimage_zoom():
    control = np.random.default_rng(1).standard_normal((7, 6, 9)).astype(np.float32)
    shape = (61, 47, 83)
    factors = [n / c for n, c in zip(shape, control.shape, strict=True)]
    expected = ndimage.zoom(control, factors, order=1, grid_mode=True, mode="nearest")
    np.testing.assert_allclose(_upsample(control, shape), expected, atol=1e-5)
