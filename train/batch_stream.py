"""Training batches cut by threads into reused buffers while the model trains on the previous batch.

The sampler's crop kernels are numba code that releases the GIL, so threads of the training process cut crops on
as many cores, straight into a batch buffer: nothing is pickled, copied between processes or allocated per batch.
A ring of `depth` buffers (pinned when the batches go to a GPU) is reused: while the model trains on one, a
producer thread fills the next. So a batch is valid only until the next one is requested; copy what you keep.

A slot is refilled only after the loop has asked for the following batch; on CUDA the producer first waits for
an event recorded on the loop's stream at that moment, so a `non_blocking` copy out of the slot has finished.
When the iteration ends the loop's stream is synchronized (the next epoch refills the last slot at once), and
one ring serves one iteration at a time: a second, started while the first runs, is refused.

`threads`: 0 cuts each batch in the loop's own thread when asked for; N > 0 uses N threads; "auto" starts
with one and adds a thread while the loop waits for batches, and drops one while the producer waits for a free
buffer long enough that one thread fewer would still keep up (up to the cores this process may use, split
between the ranks of a node). The choice is kept on the dataset, so the next epoch starts from it. The batches
never depend on the thread count: every centre is drawn in the producer from the request's seed before the
crops are cut.
"""

from __future__ import annotations

import argparse
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import torch

DEPTH = 2  # buffers in the ring: the loop trains on one while the producer fills the other
SMOOTHING = 0.3  # weight of the newest batch in the running means the "auto" thread count follows


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity (which batch schedulers and containers set), shared with
    the other ranks torchrun started on this node (LOCAL_WORLD_SIZE)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


class ThreadsSettingError(argparse.ArgumentTypeError, ValueError):
    """A `num_workers` value that is neither a count nor "auto" (argparse shows its message as it is)."""


def threads_setting(value: int | str) -> int | str:
    """The `num_workers` setting checked: a number of threads >= 0 (also given as text), or "auto"."""
    if value == "auto":
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise ThreadsSettingError(f"num_workers={value!r}: give a number of threads >= 0 or 'auto'")


class AutoThreads:
    """The "auto" thread count: follows running means of the time to cut a batch, the time the loop waited
    for one and the time the producer waited for a free buffer."""

    def __init__(self, most: int, start: int = 1):
        self.most, self.threads = most, max(1, min(start, most))
        self.cut_s = self.loop_wait_s = self.producer_wait_s = 0.0

    def update(self, cut_s: float, loop_wait_s: float, producer_wait_s: float) -> None:
        def mean(old: float, new: float) -> float:
            return (1 - SMOOTHING) * old + SMOOTHING * new

        self.cut_s = mean(self.cut_s, cut_s)
        self.loop_wait_s = mean(self.loop_wait_s, loop_wait_s)
        self.producer_wait_s = mean(self.producer_wait_s, producer_wait_s)
        if self.loop_wait_s > 0.05 * self.cut_s and self.threads < self.most:
            self.threads += 1
            self.loop_wait_s = 0.0
        elif self.threads > 1 and self.producer_wait_s > 1.5 * self.cut_s / (self.threads - 1):
            # one thread fewer cuts a batch in cut_s * n / (n - 1): still inside the time the producer idles
            self.threads -= 1
            self.producer_wait_s = 0.0


class BatchStream:
    """Iterates the batches of `plan` from `dataset` (`StationBatches` or `ScanBatches` of train/data.py: they
    have `crop_shape(n)` and `assemble(request, crops, pool, parts)`)."""

    def __init__(self, dataset, plan: list, threads: int | str, pin_memory: bool, depth: int = DEPTH):
        self.dataset, self.plan, self.depth = dataset, plan, depth
        setting = threads_setting(threads)
        self.fixed = None if setting == "auto" else setting
        self.pin_memory = pin_memory
        if self.fixed is None and getattr(dataset, "auto_threads", None) is None:
            dataset.auto_threads = AutoThreads(usable_cores())

    def __len__(self) -> int:
        return len(self.plan)

    @property
    def threads(self) -> int:
        """Threads cutting crops now (0: the loop's own thread)."""
        return self.dataset.auto_threads.threads if self.fixed is None else self.fixed

    def _ring(self) -> list[torch.Tensor]:
        """The reused batch buffers, kept on the dataset across epochs (pinned memory is slow to allocate)."""
        shape = self.dataset.crop_shape(max((len(r.items) for r in self.plan), default=0))
        key = (shape, self.pin_memory, self.depth)
        if getattr(self.dataset, "ring_key", None) != key:
            self.dataset.ring = [torch.empty(shape, dtype=torch.float32, pin_memory=self.pin_memory)
                                 for _ in range(self.depth)]
            self.dataset.ring_key = key
        return self.dataset.ring

    def _release(self) -> torch.cuda.Event | None:
        """An event the producer waits for before refilling a slot: work the loop queued so far is done."""
        if self.pin_memory and torch.cuda.is_available():
            event = torch.cuda.Event()
            event.record()
            return event
        return None

    def __iter__(self):
        if getattr(self.dataset, "ring_in_use", False):
            raise RuntimeError(f"a batch stream over this {type(self.dataset).__name__} is still being iterated and "
                               "its batches live in the same buffers; finish or close it (leave its loop) before "
                               "starting another")
        ring = self._ring()
        self.dataset.ring_in_use = True
        try:
            yield from self._inline(ring) if self.fixed == 0 else self._threaded(ring)
        finally:
            if self.pin_memory and torch.cuda.is_available():  # a copy out of the last batch may still be queued
                torch.cuda.current_stream().synchronize()
            self.dataset.ring_in_use = False

    def _threaded(self, ring):
        """threads > 0 or "auto": a producer thread fills the free slots while the loop uses the batches."""
        free: queue.Queue = queue.Queue()
        ready: queue.Queue = queue.Queue()
        for slot in range(self.depth):
            free.put((slot, None))
        stop = threading.Event()
        pool = ThreadPoolExecutor(max_workers=self.fixed or self.dataset.auto_threads.most,
                                  thread_name_prefix="lnstage-crops")
        producer = threading.Thread(target=self._produce, args=(ring, free, ready, stop, pool), daemon=True,
                                    name="lnstage-batches")
        producer.start()
        held, loop_wait_s = None, 0.0
        try:
            for _ in self.plan:
                started = time.perf_counter()
                item = ready.get()
                loop_wait_s = time.perf_counter() - started
                if isinstance(item, BaseException):
                    raise item
                slot, batch, cut_s, producer_wait_s = item
                if self.fixed is None and held is not None:  # the loop always waits for the first batch
                    self.dataset.auto_threads.update(cut_s, loop_wait_s, producer_wait_s)
                if held is not None:
                    free.put((held, self._release()))
                held = slot
                yield batch
        finally:
            stop.set()
            producer.join()
            pool.shutdown()

    def _produce(self, ring, free: queue.Queue, ready: queue.Queue, stop: threading.Event, pool) -> None:
        """Producer thread: fill free slots in plan order; an exception is handed to the loop to raise."""
        try:
            for request in self.plan:
                started = time.perf_counter()
                while True:
                    try:
                        slot, event = free.get(timeout=0.1)
                        break
                    except queue.Empty:
                        if stop.is_set():
                            return
                if event is not None:
                    event.synchronize()
                waited = time.perf_counter() - started
                threads = self.threads
                started = time.perf_counter()
                batch = self.dataset.assemble(request, ring[slot][:len(request.items)], pool, threads)
                ready.put((slot, batch, time.perf_counter() - started, waited))
        except BaseException as error:  # handed over whole: the loop's thread raises it
            ready.put(error)

    def _inline(self, ring):
        """threads = 0: each batch is cut in the loop's thread when asked for, alternating between slots."""
        events: list = [None] * self.depth
        for i, request in enumerate(self.plan):
            slot = i % self.depth
            if events[slot] is not None:
                events[slot].synchronize()
            batch = self.dataset.assemble(request, ring[slot][:len(request.items)])
            yield batch
            events[slot] = self._release()
