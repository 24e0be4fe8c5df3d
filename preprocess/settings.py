"""Settings of `python -m preprocess`: which dataset, and how the run goes.

What decides a cache file's content lives in `cache.build_settings.BuildSettings` (spacing, crop margin,
registration preset), so the trainer and `python -m cache verify` can tell a stale cache without importing
this package; the command line takes both sets of flags, and a dataset config's `[preprocess]` table may set
either.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from cache.devices import Device
from cache.settings import SettingsError

# Help of --atlas-batch and of the memory limit, shared by python -m preprocess and python -m preprocess.register
ATLAS_BATCH_HELP = ("atlases registered at once: a number, or auto: as many as fit the memory (the device's free "
                    "memory and the memory limit), on CPU no more than make 8 million voxels at the finest level "
                    "(all 5 at 2 mm, one at a time at 1 mm: there a batch adds memory, not speed)")
MEMORY_LIMIT_HELP = "on CPU the whole process counts: scan, atlas bank, libraries and registration"


@dataclass(frozen=True)
class PreprocessSettings:
    """One preprocessing run (none of these change what a cache file holds)."""

    dataset: str = field(default="demo", metadata={"help": "config name in configs/datasets/ or a TOML path"})
    root: str = field(default="", metadata={"help": "data root (else $LNSTAGE_ROOT_<NAME>, else the config)"})
    cache_root: str = field(default="", metadata={"help": "cache root (else $LNSTAGE_CACHE_ROOT, else the config)"})
    check: bool = field(default=False, metadata={"help": "validate the manifest, print a summary, process nothing"})
    force: bool = field(default=False, metadata={"help": "rebuild scans whose cache file is current"})
    workers: int = field(default=1, metadata={"help": "scans processed in parallel (processes)"})
    shard: str = field(
        default="", metadata={"help": "K/N: process only shard K (0..N-1) of N; auto: this task of a SLURM job array"}
    )
    device: Device = field(default="auto", metadata={"help": "registration device"})
    atlas_batch: str = field(default="auto", metadata={"help": ATLAS_BATCH_HELP})
    max_memory_gb: float = field(
        default=0.0, metadata={"help": "memory all scans of the run may use together, GiB (0: what is available); "
                                       + MEMORY_LIMIT_HELP}
    )


def resolve_shard(settings: PreprocessSettings, environ: Mapping[str, str] = os.environ) -> PreprocessSettings:
    """`--shard auto` -> `K/N` of this task of a contiguous SLURM array (`--array=0-7`, or 1-8: K counts from the
    lowest task id)."""
    if settings.shard != "auto":
        return settings
    names = ("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")
    if not all(environ.get(name) for name in names):
        raise SettingsError("--shard auto: SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT are not set (not a SLURM "
                            "array task); give --shard K/N, or submit with sbatch --array")
    task, count = int(environ[names[0]]), int(environ[names[1]])
    return replace(settings, shard=f"{task - int(environ.get('SLURM_ARRAY_TASK_MIN', '0'))}/{count}")
