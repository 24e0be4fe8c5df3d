"""Table 7 of the paper, measured on this machine: seconds per scan of each processing step, per pipeline.

Preprocessing steps come from the cache files' own records (`/qc/timings_s`, written by the pipeline as each
scan was built), and so does its peak memory per scan (`/qc/memory`: resident, and CUDA where it ran there),
shown on the preprocessing total row; inference steps are timed here on the test scans of the evaluated folds
(centroid patches, the classifier, rule-based staging); the baselines' steps are timed as the study runs them.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from cache import schema

# The pipeline name of the preprocessing steps every method shares; each method's total adds them.
PREPROCESSING = "Preprocessing (every method)"


@dataclass(frozen=True)
class StepTime:
    """Mean and sd of one step's seconds per scan, over `n_scans` scans; `source` says how it was measured."""

    pipeline: str
    step: str
    mean_s: float
    sd_s: float
    n_scans: int
    source: str
    peak_rss_gib: float = math.nan  # preprocessing rows: largest per-scan peak resident memory of the whole chain
    cuda_peak_gib: float = math.nan  # the same on CUDA (torch's peak allocation), where registration ran there


def recorded_step_times(paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """Step name -> seconds per scan, from each cache file's `/qc/timings_s` (NaN where a file lacks the step),
    steps by name (HDF5 keeps attributes by name). Files without the group are skipped."""
    per_file: list[dict[str, float]] = []
    for path in paths:
        with h5py.File(path, "r", locking=False) as f:
            if schema.QC_TIMINGS_GROUP in f:
                per_file.append({k: float(v) for k, v in f[schema.QC_TIMINGS_GROUP].attrs.items()})
    steps: list[str] = []
    for timings in per_file:
        steps += [s for s in timings if s not in steps]
    return {s: np.array([t.get(s, math.nan) for t in per_file]) for s in steps}


def recorded_peak_memory(paths: Sequence[Path]) -> dict[str, np.ndarray]:
    """Per scan, from each cache file's `/qc/memory`: `peak_rss_gib` and `cuda_peak_gib` (NaN where not recorded)."""
    names = (schema.QC_PEAK_RSS_ATTR, schema.QC_CUDA_PEAK_ATTR)
    values: dict[str, list[float]] = {name: [] for name in names}
    for path in paths:
        with h5py.File(path, "r", locking=False) as f:
            attrs = f[schema.QC_MEMORY_GROUP].attrs if schema.QC_MEMORY_GROUP in f else {}
            for name in names:
                values[name].append(float(attrs.get(name, math.nan)))
    return {name: np.array(v) for name, v in values.items()}


def _largest(values: np.ndarray | None) -> float:
    values = np.asarray([] if values is None else values, dtype=np.float64)
    values = values[~np.isnan(values)]
    return float(values.max()) if values.size else math.nan


def _step(pipeline: str, step: str, values: Sequence[float] | np.ndarray, source: str) -> StepTime:
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    mean = float(values.mean()) if values.size else math.nan
    sd = float(values.std(ddof=1)) if values.size > 1 else math.nan
    return StepTime(pipeline, step, mean, sd, int(values.size), source)


def preprocessing_steps(recorded: dict[str, np.ndarray],
                        memory: dict[str, np.ndarray] | None = None) -> list[StepTime]:
    """One PREPROCESSING row per recorded step (the recorded total left out: the table sums the steps), each
    carrying the largest per-scan peak memory of `memory` (`recorded_peak_memory`) for the total row."""
    memory = memory or {}
    peaks = {"peak_rss_gib": _largest(memory.get(schema.QC_PEAK_RSS_ATTR)),
             "cuda_peak_gib": _largest(memory.get(schema.QC_CUDA_PEAK_ATTR))}
    return [dataclasses.replace(_step(PREPROCESSING, name, values, "cache /qc/timings_s"), **peaks)
            for name, values in recorded.items() if name != "total"]


def per_scan(pipeline: str, step: str, seconds: float, n_scans: int, source: str) -> StepTime:
    """A step timed over a whole cohort, as seconds per scan (no per-scan spread)."""
    return StepTime(pipeline, step, seconds / n_scans if n_scans else math.nan, math.nan, n_scans, source)


def totals(steps: Sequence[StepTime]) -> dict[str, float]:
    """Pipeline -> sum of its steps' mean seconds per scan, the shared preprocessing included in each method's."""
    out: dict[str, float] = {}
    for s in steps:
        out[s.pipeline] = out.get(s.pipeline, 0.0) + (0.0 if math.isnan(s.mean_s) else s.mean_s)
    shared = out.get(PREPROCESSING, 0.0)
    return {p: v if p == PREPROCESSING else v + shared for p, v in out.items()}


def _memory(steps: Sequence[StepTime], pipeline: str) -> str:
    """'resident X GiB, CUDA Y GiB' of a pipeline's rows (the largest recorded), '' when none was recorded."""
    rss = max((s.peak_rss_gib for s in steps if s.pipeline == pipeline and not math.isnan(s.peak_rss_gib)),
              default=math.nan)
    cuda = max((s.cuda_peak_gib for s in steps if s.pipeline == pipeline and not math.isnan(s.cuda_peak_gib)),
               default=math.nan)
    parts = ([f"resident {rss:.2f} GiB"] if not math.isnan(rss) else []) + (
        [f"CUDA {cuda:.2f} GiB"] if not math.isnan(cuda) else [])
    return ", ".join(parts)


def _seconds(value: float) -> str:
    return "n/a" if math.isnan(value) else (f"{value:.3g}" if value < 10 else f"{value:.1f}")


def timing_markdown(steps: Sequence[StepTime]) -> str:
    """The Table-7 Markdown: per pipeline its steps and their total, seconds per scan; the preprocessing total
    row also gives the largest peak memory of one scan (resident, and CUDA where recorded)."""
    lines = ["| Pipeline | Processing step | mean s per scan | sd | scans | measured from | peak memory per scan |",
             "|---|---|---|---|---|---|---|"]
    pipelines = list(dict.fromkeys(s.pipeline for s in steps))
    total = totals(steps)
    for pipeline in pipelines:
        for s in (s for s in steps if s.pipeline == pipeline):
            lines.append(f"| {pipeline} | {s.step} | {_seconds(s.mean_s)} | {_seconds(s.sd_s)} | {s.n_scans} | "
                         f"{s.source} | |")
        label = "**Total**" if pipeline == PREPROCESSING else "**Total** (with preprocessing)"
        lines.append(f"| {pipeline} | {label} | **{_seconds(total[pipeline])}** | | | | {_memory(steps, pipeline)} |")
    return "\n".join(lines)


def write_timing_csv(steps: Sequence[StepTime], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["pipeline", "step", "mean_s", "sd_s", "n_scans", "source", "peak_rss_gib", "cuda_peak_gib"])
        for s in steps:
            writer.writerow([s.pipeline, s.step, s.mean_s, s.sd_s, s.n_scans, s.source, s.peak_rss_gib,
                             s.cuda_peak_gib])
        for pipeline, value in totals(steps).items():
            writer.writerow([pipeline, "total", value, "", "", "sum of the steps", "", ""])
