"""Peak memory of one scan's processing: resident memory of this process (CPU) and torch's peak on CUDA.

Linux keeps a process' high-water mark of resident memory (VmHWM in /proc/self/status); writing 5 to
/proc/self/clear_refs resets it, so a worker that processes many scans reports each scan's own peak.
"""

from __future__ import annotations

from pathlib import Path

from cache.schema import QC_CUDA_PEAK_ATTR, QC_PEAK_RSS_ATTR

GIB = 2**30


def reset_peak_memory(device: str) -> bool:
    """Start a new peak (CPU resident, and CUDA when `device` is cuda); False if the CPU peak could not be
    reset (it then counts from the start of the process)."""
    if device == "cuda":
        import torch

        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux, or not permitted: the peak then covers the process' whole life, said in the record
        return False
    return True


def _status_bytes(name: str) -> int | None:
    """A memory line of /proc/self/status (VmHWM: peak, VmRSS: now) in bytes; None where there is none."""
    try:
        lines = Path("/proc/self/status").read_text().splitlines()
    except OSError:
        return None
    return next((int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{name}:")), None)


def resident_bytes() -> int:
    """Resident memory of this process now (0 where the system does not say)."""
    return _status_bytes("VmRSS") or 0


def peak_memory_gib(device: str) -> dict[str, float]:
    """`{"peak_rss_gib": ..., "cuda_peak_gib": ... (CUDA only)}` since the last reset."""
    peak = {}
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        peak[QC_PEAK_RSS_ATTR] = hwm / GIB
    if device == "cuda":
        import torch

        peak[QC_CUDA_PEAK_ATTR] = torch.cuda.max_memory_allocated() / GIB
    return peak
