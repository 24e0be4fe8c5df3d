"""One device resolver: auto falls back to the CPU, cuda without a GPU is one usage error line everywhere."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from cache.devices import NO_CUDA, DeviceError, resolve_device
from preprocess.__main__ import cli as preprocess_cli
from train.distributed import setup

REPO = Path(__file__).resolve().parents[2]
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")


def test_cpu_and_unknown_choices():
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(DeviceError, match="--device 'tpu': choose one of auto, cpu, cuda"):
        resolve_device("tpu")


@no_gpu
def test_auto_without_a_gpu_is_the_cpu():
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", index=1) == torch.device("cpu")


@no_gpu
def test_cuda_without_a_gpu_is_the_same_error_for_preprocess_and_train(tmp_path, capsys):
    with pytest.raises(DeviceError) as error:
        resolve_device("cuda")
    assert str(error.value) == NO_CUDA and "--device cuda" in NO_CUDA
    with pytest.raises(DeviceError, match=re.escape(NO_CUDA)):
        setup("cuda")
    dataset = tmp_path / "nowhere.toml"  # refused before its (missing) manifest is read
    dataset.write_text(f'root = "{tmp_path / "none"}"\ncache_root = "{tmp_path / "cache"}"\n')
    status = preprocess_cli(["--dataset", str(dataset), "--device", "cuda"])
    assert status == 2  # a usage error, like any other bad flag
    assert capsys.readouterr().err.strip().splitlines()[-1] == f"error: {NO_CUDA}"


def test_importing_the_resolver_does_not_import_torch():
    code = "import sys, cache.devices; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO).returncode == 0
