"""The log file of a long command, and progress that suits a terminal or a batch log.

`run_log(path, ...)` copies everything the command prints (stdout and stderr, so warnings too) into `path`, each
line stamped with the time, after a header with the command line and the settings; at the end it records the
exit status, wall time and peak memory, and the traceback of an error. Worker ranks of a torchrun job write no log.

`progress(items, desc=..., total=...)` is a tqdm bar on a terminal; when output goes to a file (a SLURM log) it
prints one plain line every `every` items (default: a tenth of the total) instead of carriage-return updates.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shlex
import socket
import sys
import time
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TextIO


class _Tee:
    """A text stream that writes to the console stream and to the log file, stamping each log line."""

    def __init__(self, console: TextIO, log: IO[str]) -> None:
        self.console, self.log, self.at_line_start = console, log, True

    def write(self, text: str) -> int:
        self.console.write(text)
        if "\r" not in text:  # carriage-return updates of a terminal progress bar stay out of the log
            for piece in text.splitlines(keepends=True):
                if self.at_line_start:
                    self.log.write(time.strftime("%H:%M:%S "))
                self.log.write(piece)
                self.at_line_start = piece.endswith("\n")
            self.log.flush()
        return len(text)

    def flush(self) -> None:
        self.console.flush()
        self.log.flush()

    def isatty(self) -> bool:
        return self.console.isatty()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, ... of the console stream
        return getattr(self.console, name)


@dataclass
class RunStatus:
    """What the block under `run_log` sets: the exit status its command returns."""

    exit_status: int = 0


def _open_log(path: Path) -> TextIO:
    """The log file opened for appending; a folder that cannot be written is an error saying so, before any work."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "a", encoding="utf-8")
    except OSError as error:
        raise OSError(error.errno, f"{path}: the run's log file cannot be written ({error.strerror}); make "
                      f"{path.parent} writable or choose another output folder") from error


@contextlib.contextmanager
def run_log(path: Path | str | None, prog: str, argv: Sequence[str] | None, settings_text: str
            ) -> Iterator[RunStatus]:
    """Log the command's output to `path` (appended; None or a worker rank: no log) while the block runs."""
    run = RunStatus()
    if path is None or os.environ.get("RANK", "0") != "0":
        yield run
        return
    path = Path(path)
    start = time.perf_counter()
    with _open_log(path) as log:
        command = " ".join([prog, *map(shlex.quote, sys.argv[1:] if argv is None else argv)])
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} on {socket.gethostname()} (pid {os.getpid()}): "
                  f"{command}\n{settings_text}\n")
        log.flush()
        stdout, stderr, show_warning = sys.stdout, sys.stderr, warnings.showwarning
        sys.stdout, sys.stderr = _Tee(stdout, log), _Tee(stderr, log)
        warnings.showwarning = _logging_warnings(show_warning, log)
        status = ""
        try:
            print(f"log: {path}")
            yield run
        except SystemExit as stop:
            status = f"exit {stop.code}"
            raise
        except BaseException as error:
            status = f"failed: {type(error).__name__}: {error}"
            log.write("".join(traceback.format_exception(error)))
            raise
        finally:
            sys.stdout, sys.stderr, warnings.showwarning = stdout, stderr, show_warning
            status = status or f"exit {run.exit_status}"
            seconds = time.perf_counter() - start
            log.write(f"=== {status}; {seconds:.1f} s wall, peak memory {peak_memory_gib():.2f} GiB\n")


def _logging_warnings(show_warning: Any, log: IO[str]) -> Any:
    """`warnings.showwarning` that also writes the warning to the log (a test harness may capture stderr's)."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        log.write(time.strftime("%H:%M:%S ") + warnings.formatwarning(message, category, filename, lineno, line))
        sys.stderr, stderr = sys.stderr.console if isinstance(sys.stderr, _Tee) else sys.stderr, sys.stderr
        try:  # shown on the console only: the line above is its copy in the log
            show_warning(message, category, filename, lineno, file, line)
        finally:
            sys.stderr = stderr

    return show


def peak_memory_gib() -> float:
    """Peak resident memory of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def output_is_terminal() -> bool:
    return sys.stderr.isatty()


class Progress:
    """Counts items and prints a plain line every `every` of them (for logs; `progress` picks tqdm on a terminal)."""

    def __init__(self, items: Iterable | None, desc: str, total: int | None, unit: str, every: int | None,
                 enabled: bool) -> None:
        self.items, self.desc, self.unit, self.enabled = items, desc, unit, enabled
        self.total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
        self.every = every or (max(1, -(-self.total // 10)) if self.total else 100)
        self.count, self.start, self.postfix = 0, time.perf_counter(), ""

    def __iter__(self) -> Iterator:
        for item in self.items:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        before, self.count = self.count, self.count + n
        if self.enabled and self.count // self.every > before // self.every and self.count != self.total:
            self._line()

    def write(self, text: str) -> None:
        print(text)

    def set_postfix(self, **values: Any) -> None:
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.enabled and self.count:
            self._line()
            self.enabled = False  # a second close prints nothing

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        of = f"/{self.total}" if self.total else ""
        rate = f", {self.count / elapsed:.2f} {self.unit}/s" if elapsed > 0 else ""
        print(f"{self.desc}: {self.count}{of} {self.unit} in {elapsed:.1f} s{rate}"
              + (f" ({self.postfix})" if self.postfix else ""), flush=True)


def progress(items: Iterable | None = None, *, desc: str = "", total: int | None = None, unit: str = "it",
             every: int | None = None, enabled: bool = True, leave: bool = True) -> Any:
    """A tqdm bar on a terminal (`leave`: keep it when done), else a `Progress` printing a line per `every` items;
    nothing when not enabled."""
    if output_is_terminal():
        from tqdm import tqdm

        return tqdm(items, desc=desc, total=total, unit=unit, disable=not enabled, leave=leave)
    return Progress(items, desc, total, unit, every, enabled)
