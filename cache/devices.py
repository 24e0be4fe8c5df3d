"""The compute device of a run, from the `--device` choice (auto, cpu or cuda): one resolver for preprocess,
train and evaluate. torch is imported when a device is resolved, not when `cache` is imported."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, get_args

from cache.settings import SettingsError

if TYPE_CHECKING:
    import torch

Device = Literal["auto", "cpu", "cuda"]  # the type of every settings class's `device` field
DEVICE_CHOICES = get_args(Device)
NO_CUDA = "--device cuda: torch sees no CUDA device on this machine; use --device cpu or --device auto"


class DeviceError(SettingsError):
    """A device choice this machine cannot honour; a usage error (exit 2), as a bad flag is."""


def resolve_device(choice: str, index: int | None = None) -> torch.device:
    """`auto`: CUDA when torch sees a GPU, else the CPU; `cuda` without a GPU is an error, never a silent CPU run.

    `index` picks the GPU (torchrun's LOCAL_RANK); None leaves it to torch's current device.
    """
    import torch

    if choice not in DEVICE_CHOICES:
        raise DeviceError(f"--device {choice!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise DeviceError(NO_CUDA)
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", index)
