"""Real CT registered to a copy of itself warped by a known smooth field (small version of the benchmark)."""

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from preprocess.register.channels import windowed_ct
from preprocess.register.settings import RegistrationSettings
from preprocess.register.variational import register_deformable
from preprocess.register.warp import fixed_normaliser, warp_through
from tests.preprocess.register.known_field import smooth_random_field


def test_known_deformation_of_real_ct_is_recovered(shared_data):
    folder = shared_data / "ct" / "totalsegmentator" / "mediastinum_crop"
    ct = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "ct_cropped.nii.gz"))).astype(np.float32)
    aorta = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "aorta.nii.gz"))).astype(np.float32)
    # 3 mm instead of the data's 1.5 mm keeps the test fast; the benchmark runs the full resolution
    images = F.avg_pool3d(torch.stack([windowed_ct(ct, -200, 400), torch.from_numpy(aorta),
                                       torch.from_numpy((ct > -500).astype(np.float32))])[None], 2)
    spacing, shape = 3.0, tuple(images.shape[2:])
    truth = smooth_random_field(shape, spacing, 7.0, 80.0, torch.Generator().manual_seed(5))
    identity = fixed_normaliser(shape, spacing, "cpu")[None]
    fixed = warp_through(images, identity, shape, shape, spacing, truth)
    settings = RegistrationSettings(deformable_levels_mm=(12.0, 6.0, 0.0), deformable_iterations=(50, 50, 60),
                                    stop_line_fit_slope=1e-5)
    field = register_deformable(fixed[:, :1], images[:, :1], torch.ones(1, 1), identity, spacing, settings).field_mm
    registered = warp_through(images, identity, shape, shape, spacing, field)
    fixed_aorta, warped_aorta = fixed[0, 1] > 0.5, registered[0, 1] > 0.5
    dice = 2 * float((fixed_aorta & warped_aorta).sum()) / float(fixed_aorta.sum() + warped_aorta.sum())
    body = fixed[0, 2] > 0.5
    error = (field - truth).norm(dim=1)[0][body].mean()
    assert float(truth.norm(dim=1).max()) >= 6.0
    assert dice >= 0.95
    assert float(error) < 0.25 * float(truth.norm(dim=1)[0][body].mean()) and float(error) < 1.0
