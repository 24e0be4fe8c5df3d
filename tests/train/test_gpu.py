"""CUDA checks (deselected by default; the lead runs `pytest -m gpu tests/train` on a GPU machine)."""

import pytest
import torch

from train.__main__ import main
from train.augment import AugmentSettings, Transforms, augment, random_transforms, warp
from train.checkpoint import load_checkpoint

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")


def test_ts1_and_ts2_train_on_cuda_with_amp(tiny_dataset, tmp_path):
    common = ["--dataset", str(tiny_dataset), "--runs-dir", str(tmp_path), "--device", "cuda", "--max-epochs", "2"]
    assert main(["ts1", *common]) == 0
    assert main(["ts2", *common]) == 0
    state = load_checkpoint(tmp_path / "tiny" / "ts2" / "fold0" / "last.pt")
    assert state["scaler"]  # AMP's GradScaler ran (its state is empty when disabled)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert main(["ts2", *common[:-1], "3", "--resume"]) == 0  # RNG states restored from a CUDA-mapped checkpoint


def test_augmentation_on_cuda_matches_cpu_for_the_same_transforms():
    transforms = random_transforms(3, AugmentSettings(), torch.Generator().manual_seed(0))
    crops = torch.rand(3, 2, 20, 20, 20)
    cpu = warp(crops, transforms, 8)
    on_gpu = warp(crops.cuda(), Transforms(transforms.matrix.cuda(), transforms.displacement.cuda()), 8)
    torch.testing.assert_close(on_gpu.cpu(), cpu, atol=1e-4, rtol=1e-4)
    assert augment(crops.cuda(), 8, AugmentSettings(), torch.Generator("cuda").manual_seed(0)).is_cuda
