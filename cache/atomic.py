"""Write-then-rename: a result file appears at its path complete or not at all.

The content goes to a temporary file beside the target (same file system, so the rename is atomic), is fsynced
and renamed onto it; on any error, a kill included, the old file stays as it was. A kill leaves at most a
dot-hidden `*.tmp` file beside the target, which `train` clears at the start of a run and `cache.writer` clears
for its own files.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path, directory: bool = False) -> None:
    """Flush a file (or a folder's entries, after a rename) to the disk."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_path(path: str | Path, temp: Path | None = None) -> Iterator[Path]:
    """A temporary path beside `path` for the block to write; renamed onto `path` when the block ends without
    error, deleted when it raises. `temp` names it (default `.<name>.<pid>.<random>.tmp`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp or path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        yield temp
        fsync_path(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent, directory=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """`text` written to `path` through `atomic_path`; returns `path`."""
    with atomic_path(path) as temp:
        temp.write_text(text)
    return Path(path)
