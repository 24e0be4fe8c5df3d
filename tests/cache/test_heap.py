import resource
from pathlib import Path

import pytest

from cache.heap import glibc, reused_heap


def _faults_of_a_fresh_buffer(n_bytes: int) -> int:
    """Minor page faults of making a zero-filled buffer of `n_bytes` with malloc (then freed)."""
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    buffer = bytearray(n_bytes)
    del buffer
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def test_reused_heap_serves_freed_big_buffers_again_without_new_page_faults():
    if not Path("/proc/self/status").exists() or glibc() is None:
        pytest.skip("glibc only")
    with reused_heap():
        first = _faults_of_a_fresh_buffer(2**27)
        again = [_faults_of_a_fresh_buffer(2**26) for _ in range(3)]
    assert first > 10000  # 32768 pages of 4 KiB touched for the first time
    assert max(again) < 100  # the same memory, still mapped
    assert _faults_of_a_fresh_buffer(2**26) > 10000  # outside the block each buffer is mapped and returned again
