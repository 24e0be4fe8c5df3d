"""Memory estimate, available memory and the atlas batch it allows."""

from dataclasses import replace

import pytest
import torch

from preprocess.register import registration_settings
from preprocess.register.linear import RegistrationError
from preprocess.register.memory import (
    CPU_BATCH_VOXELS,
    GIB,
    LIBRARY_BYTES,
    MARGIN_BYTES,
    MemoryBudgetError,
    MemoryEstimate,
    available_bytes,
    choose_atlas_batch,
    estimate_registration,
    registration_budget,
)


def test_estimate_grows_linearly_with_voxels_and_atlases_add_per_atlas_memory():
    full = registration_settings("full")
    small = estimate_registration((100, 80, 90), (110, 90, 100), 2.0, full, "cpu")
    large = estimate_registration((200, 160, 180), (220, 180, 200), 1.0, full, "cpu")
    fixed = MARGIN_BYTES + LIBRARY_BYTES
    ratio = (large.peak_bytes(1) - fixed) / (small.peak_bytes(1) - fixed)
    assert ratio == pytest.approx(8.0, rel=1e-6)  # 8 times the voxels, 8 times the memory beyond a fixed margin
    held = estimate_registration((200, 160, 180), (220, 180, 200), 1.0, full, "cpu", held_bytes=GIB)
    assert held.shared_bytes == large.shared_bytes + GIB and held.per_atlas_bytes == large.per_atlas_bytes
    on_card = estimate_registration((200, 160, 180), (220, 180, 200), 1.0, full, "cuda", held_bytes=GIB)
    assert on_card.shared_bytes < held.shared_bytes  # the card holds no bank, scan or libraries
    assert large.peak_bytes(5) - large.peak_bytes(4) == large.per_atlas_bytes > 0
    # the demo preset's finest level is 4 mm: its fields and channels are far smaller at 1 mm
    demo = estimate_registration((200, 160, 180), (220, 180, 200), 1.0, registration_settings("demo"), "cpu")
    assert demo.per_atlas_bytes < large.per_atlas_bytes / 4
    with_ct = estimate_registration((200, 160, 180), (220, 180, 200), 1.0, replace(full, use_ct_channel=True), "cpu")
    assert with_ct.per_atlas_bytes > large.per_atlas_bytes


def test_auto_batch_takes_as_many_atlases_as_fit_on_cuda_one_on_cpu_and_a_number_is_kept():
    estimate = MemoryEstimate(shared_bytes=2 * GIB, per_atlas_bytes=GIB)
    assert choose_atlas_batch(estimate, 5, "auto", 10 * GIB, "scan", "cuda") == 5
    assert choose_atlas_batch(estimate, 10, "auto", int(5.5 * GIB), "scan", "cuda") == 3
    assert choose_atlas_batch(estimate, 10, "auto", 3 * GIB, "scan", "cuda") == 1
    # CPU: batched up to CPU_BATCH_VOXELS at the finest level (1 mm crops: one at a time, 2 mm: all 5)
    large_level = MemoryEstimate(2 * GIB, GIB, level_voxels=15_000_000)
    small_level = MemoryEstimate(2 * GIB, GIB, level_voxels=CPU_BATCH_VOXELS // 4)
    assert choose_atlas_batch(large_level, 5, "auto", 10 * GIB, "scan", "cpu") == 1
    assert choose_atlas_batch(small_level, 5, "auto", 10 * GIB, "scan", "cpu") == 4
    assert choose_atlas_batch(small_level, 5, "auto", int(4.5 * GIB), "scan", "cpu") == 2  # and as memory allows
    assert choose_atlas_batch(large_level, 5, "3", 10 * GIB, "scan", "cpu") == 3
    assert choose_atlas_batch(estimate, 10, "2", 100 * GIB, "scan") == 2
    assert choose_atlas_batch(estimate, 3, 7, 100 * GIB, "scan") == 3
    with pytest.raises(MemoryBudgetError, match=r"scan s1: .*3\.0 GiB with one atlas at a time, 2\.5 GiB available"):
        choose_atlas_batch(estimate, 10, "auto", int(2.5 * GIB), "scan s1")
    with pytest.raises(RegistrationError, match="auto or a whole number"):
        choose_atlas_batch(estimate, 10, "many", 100 * GIB, "scan")


def test_available_memory_of_the_cpu_is_read_from_the_system():
    available = available_bytes(torch.device("cpu"))
    total = int(open("/proc/meminfo").read().split("MemTotal:")[1].split()[0]) * 1024
    assert 0 < available <= total


def test_a_limit_caps_the_budget_and_without_one_the_process_own_memory_counts():
    cpu = torch.device("cpu")
    assert registration_budget(cpu, 0.5) == GIB // 2  # this machine has more than half a GiB available
    assert registration_budget(cpu, 0.0) > GIB // 2
