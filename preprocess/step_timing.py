"""Seconds per named step of one scan's preprocessing, summed when a step runs more than once."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")


@contextmanager
def timing(timings: dict[str, float], step: str) -> Iterator[None]:
    """Add the seconds the block takes to `timings[step]`, also when it raises (a failed scan shows where)."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[step] = timings.get(step, 0.0) + time.perf_counter() - start


def timed(timings: dict[str, float], step: str, work: Callable[[], T]) -> T:
    """`work()`, its seconds added to `timings[step]`."""
    with timing(timings, step):
        return work()
