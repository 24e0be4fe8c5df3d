"""Settings of `python -m preprocess`: which dataset, and how the run goes.

What decides a cache file's content lives in `cache.build_settings.BuildSettings` (spacing, crop margin,
registration preset), so the trainer and `python -m cache verify` can tell a stale cache without importing
this package; the command line takes both sets of flags, and a dataset config's `[preprocess]` table may set
either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class PreprocessSettings:
    """One preprocessing run (none of these change what a cache file holds)."""

    dataset: str = field(default="demo", metadata={"help": "config name in configs/datasets/ or a TOML path"})
    root: str = field(default="", metadata={"help": "data root (else $LNSTAGE_ROOT_<NAME>, else the config)"})
    cache_root: str = field(default="", metadata={"help": "cache root (else $LNSTAGE_CACHE_ROOT, else the config)"})
    check: bool = field(default=False, metadata={"help": "validate the manifest, print a summary, process nothing"})
    force: bool = field(default=False, metadata={"help": "rebuild scans whose cache file is current"})
    workers: int = field(default=1, metadata={"help": "scans processed in parallel (processes)"})
    shard: str = field(default="", metadata={"help": "K/N: process only shard K (0..N-1) of N, e.g. a SLURM array"})
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "registration device"})
