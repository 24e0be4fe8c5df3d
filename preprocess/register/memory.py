"""How much memory registering one scan takes, how much there is, and how many atlases to register at once.

The estimate counts the arrays that live together at the finest deformable level, where the peak is: per atlas
of a batch its padded labels and float32 channels, one warped image and about five displacement fields (field,
best field, force/update, the regulariser's spectrum and result) and its final field, on the scan's crop;
shared by every batch the fixed image's channels, the regulariser's eigenvalues and the vote (the background's
summed probability for the whole crop, counts and sums in the stations' box, counted as a third of the crop).
On CPU it also counts what the process holds while registering (the scan's and the atlas bank's arrays and
the libraries), so that a limit (--max-memory-gb) bounds the whole scan's resident memory. On the 2 mm phantom
the count lies above the measured growth of resident memory (benchmarks/memory.py), so it errs on the safe
side; `MARGIN_BYTES` covers allocator slack and what the count leaves out. Available memory is MemAvailable of
/proc/meminfo on CPU (no psutil) and the free memory of the card on CUDA.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from preprocess.peak_memory import resident_bytes
from preprocess.register.linear import RegistrationError
from preprocess.register.warp import level_shape

GIB = 2**30
MARGIN_BYTES = GIB  # allocator slack (freed blocks stay in the heap while registering) and the chain's PET/SUV:
# the 1 mm phantom's whole chain peaked at 4.29 GiB, 0.52 GiB above the count with a quarter GiB here
# CPU: atlases are batched until the finest level of a batch holds this many voxels. A batch shares each pass's
# fixed cost (Python, thread start-up, transform plans) between its atlases, which pays on small levels (2 mm,
# demo preset: 5 atlases at once take half the CPU time of one at a time); beyond this the kernels are busy
# with one atlas' voxels and a batch only multiplies the memory (1 mm, `full`: 15.6 Mvox, one at a time).
CPU_BATCH_VOXELS = 8_000_000
LIBRARY_BYTES = GIB // 2  # Python, torch, numba, scipy and the kernels, resident in a preprocessing process (0.4 GiB)
BOX_FRACTION = 1 / 3  # of the crop that the stations' vote box is counted as (the mediastinum of a thorax crop)


class MemoryBudgetError(RegistrationError):
    """Even one atlas at a time does not fit the memory available for a scan."""


@dataclass(frozen=True)
class MemoryEstimate:
    """Estimated peak bytes of registering one scan: `shared_bytes` whatever the batch, plus `per_atlas_bytes` for
    every atlas registered at the same time."""

    shared_bytes: int
    per_atlas_bytes: int
    level_voxels: int = 0  # voxels of the finest deformable level, per atlas (0: not known)

    def peak_bytes(self, batch: int) -> int:
        return self.shared_bytes + batch * self.per_atlas_bytes


def estimate_registration(shape_zyx: tuple[int, ...], padded_zyx: tuple[int, ...], spacing_mm: float, settings,
                          device_type: str, held_bytes: int = 0) -> MemoryEstimate:
    """Peak-memory estimate of `map_stations` on a crop of `shape_zyx` voxels with atlases padded to `padded_zyx`.

    The finest deformable level decides (the crop's own grid for the `full` preset); label warping, the vote and
    the QA work on the full grid, one atlas at a time. On CPU `held_bytes` (the arrays the caller holds: scan,
    atlas bank) and `LIBRARY_BYTES` are added, so the estimate is the process' peak.
    """
    finest_mm = settings.deformable_levels_mm[-1] if settings.deformable_levels_mm else 0.0
    voxels, padded = math.prod(shape_zyx), math.prod(padded_zyx)
    level = math.prod(level_shape(tuple(shape_zyx), spacing_mm, finest_mm))
    padded_level = math.prod(level_shape(tuple(padded_zyx), spacing_mm, finest_mm))
    channels = len(settings.deformable_channels) + int(settings.use_ct_channel)
    fields = 5 + 2 * int(settings.diffeomorphic)
    # per atlas: group and station labels (uint8), CT if used, channels, one warped image, fields, final field
    per_atlas = (2 * padded + 4 * padded * int(settings.use_ct_channel) + 4 * channels * (padded_level + level)
                 + 12 * fields * level + 12 * voxels)
    # shared: fixed labels, background sum, vote counts (uint8) and sums (float32) of 18 labels in the box, the
    # fixed channels and the regulariser's eigenvalues
    shared = voxels * (1 + 4 + (18 + 72) * BOX_FRACTION) + 4 * (channels + 1) * level
    if device_type == "cuda":  # tensor code: the force's sums and one channel's gradients, the sampling grids
        per_atlas += 88 * level
        shared += 12 * level
    else:
        shared += held_bytes + LIBRARY_BYTES
        if padded_level == padded and not settings.use_ct_channel:  # the moving one-hot channels stay labels
            per_atlas -= 4 * channels * padded_level
    return MemoryEstimate(int(shared) + MARGIN_BYTES, int(per_atlas), int(level))


def available_bytes(device: torch.device) -> int:
    """Memory a scan may use now: MemAvailable (/proc/meminfo) on CPU, the card's free memory on CUDA."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    raise RegistrationError("/proc/meminfo has no MemAvailable line; give max_memory_gb (--max-memory-gb) instead")


def registration_budget(device: torch.device, limit_gb: float) -> int:
    """Bytes the estimate may reach: on CPU the memory available plus what this process already holds (the
    estimate counts it), on CUDA the card's free memory; at most `limit_gb` when it is > 0 (a scan's share of
    --max-memory-gb)."""
    budget = available_bytes(device) + (resident_bytes() if device.type == "cpu" else 0)
    return min(budget, int(limit_gb * GIB)) if limit_gb > 0 else budget


def parse_atlas_batch(text: str | int) -> int | None:
    """`auto` -> None (chosen from memory), else a positive whole number of atlases registered at once."""
    if str(text) == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise RegistrationError(f"atlas_batch (--atlas-batch) must be auto or a whole number >= 1, got {text!r}")
    return value


def choose_atlas_batch(estimate: MemoryEstimate, n_atlases: int, atlas_batch: str | int, budget_bytes: int,
                       what: str, device_type: str = "cuda") -> int:
    """Atlases to register at once: `atlas_batch` if a number, else (auto) as many as fit `budget_bytes` (all if
    they do), on CPU no more than make `CPU_BATCH_VOXELS` at the finest level (as
    `preprocess.settings.ATLAS_BATCH_HELP` says). Raises MemoryBudgetError, naming `what`, the estimate and the
    budget, when one atlas does not fit."""
    one = estimate.peak_bytes(1)
    if one > budget_bytes:
        raise MemoryBudgetError(
            f"{what}: registration needs an estimated {one / GIB:.1f} GiB with one atlas at a time, "
            f"{budget_bytes / GIB:.1f} GiB available; use a coarser --spacing-mm, --registration-preset demo "
            "(finest level 4 mm), --device cuda/cpu where more memory is free, or fewer --workers")
    requested = parse_atlas_batch(atlas_batch)
    if requested is not None:
        return min(requested, n_atlases)
    fit = (budget_bytes - estimate.shared_bytes) // max(estimate.per_atlas_bytes, 1)
    if device_type == "cpu" and estimate.level_voxels:
        fit = min(fit, math.ceil(CPU_BATCH_VOXELS / estimate.level_voxels))
    return int(max(1, min(fit, n_atlases)))
