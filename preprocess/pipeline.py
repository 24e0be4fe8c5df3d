"""The preprocessing chain: per manifest row, read -> SUV -> resample/crop -> register and fuse -> weight maps ->
station statistics -> write one cache file (atomically), each step timed.

Scans whose cache file is current (same settings hash, inputs hash and labels) are skipped unless `force`; a
file whose manifest labels changed gets its labels rewritten, without registering again; a failing
scan is reported with its cause and the others go on; the summary names every failure and the exit status is 1
when anything failed. `--workers N` runs scans in N processes; `--shard K/N` takes every N-th scan from K.
"""

from __future__ import annotations

import dataclasses
import os
import time
import traceback
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from cache.build_settings import BuildSettings
from cache.checksums import file_digest, input_digests, mapping_digest
from cache.dataset import DatasetConfig
from cache.devices import resolve_device
from cache.manifest import ManifestRow, read_manifest
from cache.reader import CacheError, read_info
from cache.run_log import progress
from cache.schema import cache_file_name
from cache.settings import settings_hash
from cache.writer import ScanLabels, ScanRecord, check_writable, relabel_scan, remove_dead_temps, write_scan
from preprocess.peak_memory import GIB, peak_memory_gib, reset_peak_memory
from preprocess.settings import PreprocessSettings
from preprocess.station_stats import station_tables
from preprocess.step_timing import timed
from preprocess.suv import SuvSettings

Status = Literal["written", "relabelled", "skipped", "failed"]


@dataclass(frozen=True)
class InputConventions:
    """Dataset conventions that change how inputs are read, hence what a cache file holds."""

    pet_nifti_is_suv: bool
    totalseg_version: str


@dataclass(frozen=True)
class ScanOutcome:
    key: str
    status: Status
    seconds: float
    timings_s: dict[str, float]
    error: str = ""
    flags: str = ""  # the registration check's flags of a written scan (`preprocess.register.qa.registration_check`)


@dataclass(frozen=True)
class RunContext:
    """What every scan of a run shares (picklable, for worker processes)."""

    dataset: DatasetConfig
    build: BuildSettings
    suv: SuvSettings
    force: bool
    device: str
    atlas_bank_digest: str
    atlas_batch: str = "auto"
    memory_budget_gb: float = 0.0  # per scan: the run's limit (or what was available) shared by the workers

    def content_settings(self, registration) -> tuple:
        conventions = InputConventions(self.dataset.pet_nifti_is_suv, self.dataset.totalseg_version)
        return (self.build, self.suv, registration, conventions)


def parse_shard(text: str) -> tuple[int, int]:
    """`K/N` -> (K, N) with 0 <= K < N; "" -> (0, 1)."""
    if not text:
        return 0, 1
    try:
        k, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise ValueError(f"--shard {text!r}: expected K/N with integers, e.g. 0/4") from None
    if not 0 <= k < n:
        raise ValueError(f"--shard {text!r}: K must be in 0..N-1")
    return k, n


def scan_memory_budget_gb(max_memory_gb: float, workers: int, device: str) -> float:
    """Memory one scan may use, GiB: the run's limit, or what the device has available now, shared by the
    workers (N scans at once must fit together); 0 for one worker without a limit (the scan then plans with
    what is available when its registration starts)."""
    if max_memory_gb > 0:
        return max_memory_gb / workers
    if workers == 1:
        return 0.0
    import torch

    from preprocess.register.memory import available_bytes

    return available_bytes(torch.device(device)) / GIB / workers


# Per-process state: the atlas bank is loaded once per process, not once per scan.
_BANK: dict[str, Any] = {}


def _atlas_bank(context: RunContext, registration):
    from preprocess.register import load_atlas_bank

    key = str(context.dataset.atlas_bank_path)
    if key not in _BANK:
        _BANK[key] = load_atlas_bank(context.dataset.atlas_bank_path, context.build.spacing_mm,
                                     context.build.crop_margin_mm)
    return _BANK[key]


def _registration_settings(build: BuildSettings):
    from preprocess.register.settings import registration_settings

    return registration_settings(build.registration_preset)


def vote_agreement(labels: np.ndarray, votes: np.ndarray, n_atlases: int = 1) -> dict[int, float]:
    """Mean fraction of atlases voting for each fused station inside it.

    `votes` counts (or fractions, with n_atlases 1) per station (17, z, y, x), or the winning label's (z, y, x).
    One pass over the station voxels (gathered, then summed per code), not one pass over the volume per station.
    """
    inside = np.nonzero(labels)
    codes = labels[inside].astype(np.intp)
    per_voxel = votes[(codes - 1, *inside)] if votes.ndim == 4 else votes[inside]
    sums = np.bincount(codes, weights=per_voxel.astype(np.float64, copy=False))
    counts = np.bincount(codes, minlength=len(sums))
    return {int(code): float(sums[code] / counts[code]) / n_atlases for code in np.flatnonzero(counts)}


def qc_values(value: Any, numeric_only: bool) -> Any:
    """QC values as HDF5 attributes take them: nested dicts of numbers (and, unless numeric_only, strings).

    Provenance is kept numeric only: its strings can hold input paths or DICOM identifiers (no PHI in a cache).
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, Mapping):
        items = {str(k): qc_values(v, numeric_only) for k, v in value.items()}
        return {k: v for k, v in items.items() if v is not None and not (isinstance(v, dict) and not v)}
    if isinstance(value, (bool, np.bool_, int, float, np.integer, np.floating)):
        return value
    if isinstance(value, str):
        return None if numeric_only else value
    if isinstance(value, (list, tuple, np.ndarray)):
        array = np.asarray(value)
        return array if array.dtype.kind in "biuf" and array.size else None
    return None


def registration_qc(records) -> dict:
    """Registration QA as `{atlas: {stage: {metric: value}}}` from per-atlas-and-stage records (or a mapping)."""
    if isinstance(records, Mapping):
        return qc_values(records, numeric_only=False)
    nested: dict[str, dict] = {}
    for record in records:
        values = {k: v for k, v in dict(record).items() if k not in ("atlas", "stage")}
        nested.setdefault(str(record["atlas"]), {})[str(record["stage"])] = qc_values(values, numeric_only=False)
    return nested


def cache_state(path: Path, current_settings_hash: str, inputs_hash: str, labels: ScanLabels,
                rule_set: str) -> Literal["build", "relabel", "current"]:
    """What a scan's cache file needs: "build" when it is missing, unreadable, damaged, or made from other
    settings or input content; "relabel" when only the manifest's labels (or the rule set) changed; else
    "current". Labels are part of "current", so evaluation never reads labels the manifest no longer holds."""
    if not path.is_file():
        return "build"
    try:
        info = read_info(path, verify=True)
    except CacheError:
        return "build"
    if info.settings_hash != current_settings_hash or info.inputs_hash != inputs_hash:
        return "build"
    return "relabel" if info.labels.differences(labels) or info.rule_set != rule_set else "current"


def process_scan(row: ManifestRow, context: RunContext) -> ScanOutcome:
    """Run the chain for one scan; never raises (a failure is an outcome naming its cause)."""
    start = time.perf_counter()
    timings: dict[str, float] = {}
    try:
        return _process(row, context, timings, start)
    except Exception as error:  # one scan's failure must not stop the run; its cause goes in the summary
        cause = f"{type(error).__name__}: {error}"
        where = traceback.extract_tb(error.__traceback__)[-1]
        return ScanOutcome(row.key, "failed", time.perf_counter() - start, timings,
                           f"{cause} (at {Path(where.filename).name}:{where.lineno})")


def _process(row: ManifestRow, context: RunContext, timings: dict[str, float], start: float) -> ScanOutcome:
    from preprocess.prepare import prepare_scan
    from preprocess.register import map_stations
    from preprocess.register.qa import registration_check

    registration = _registration_settings(context.build)
    settings = context.content_settings(registration)
    path = context.dataset.cache_dir / cache_file_name(row.patient_id, row.scan_id)
    inputs = timed(timings, "hash_inputs", lambda: input_digests(row, context.atlas_bank_digest))
    labels = ScanLabels.from_manifest_row(row)
    state = "build" if context.force else cache_state(path, settings_hash(*settings), mapping_digest(inputs), labels,
                                                      context.dataset.rule_set)
    if state == "current":
        return ScanOutcome(row.key, "skipped", time.perf_counter() - start, timings)
    if state == "relabel":
        timed(timings, "relabel", lambda: relabel_scan(path, labels, context.dataset.rule_set))
        return ScanOutcome(row.key, "relabelled", time.perf_counter() - start, timings)
    per_scan_peak = reset_peak_memory(context.device)
    prepared = prepare_scan(row, context.dataset, context.build.spacing_mm, context.build.crop_margin_mm,
                            context.suv)
    timings.update(prepared.timings_s)
    bank = timed(timings, "load_atlases", lambda: _atlas_bank(context, registration))
    station_map = timed(timings, "register", lambda: map_stations(
        prepared.ct_hu, prepared.structures, prepared.grid, bank, registration, context.device, context.atlas_batch,
        context.memory_budget_gb, f"scan {row.key}"))
    agreement = vote_agreement(station_map.labels, station_map.votes, station_map.n_atlases)
    tables = timed(timings, "weight_maps", lambda: station_tables(station_map.labels, prepared.suv, prepared.grid,
                                                                   agreement))
    qc = {"registration": registration_qc(station_map.qa),
          "registration_timings_s": qc_values(station_map.timings_s, numeric_only=True),
          "provenance": qc_values({k: v for k, v in prepared.provenance.items() if k != "inputs"}, numeric_only=True)}
    qc["memory"] = {**station_map.memory, **peak_memory_gib(context.device), "peak_is_per_scan": per_scan_peak}
    qc["registration_check"] = registration_check(station_map.qa, registration.qa_held_out_dice_min,
                                                  registration.qa_jacobian_min, registration.qa_jacobian_max)
    record = ScanRecord(
        dataset=context.dataset.name, patient_id=row.patient_id, scan_id=row.scan_id, grid=prepared.grid,
        ct_hu=prepared.ct_hu, suv=prepared.suv, station_labels=np.ascontiguousarray(station_map.labels, np.uint8),
        stations=tables, labels=labels, settings=settings, inputs=inputs,
        rule_set=context.dataset.rule_set, qc=qc, lesions=prepared.lesions,
    )
    timings["total"] = time.perf_counter() - start
    timed(timings, "write", lambda: write_scan(path, dataclasses.replace(record, qc={**qc, "timings_s": timings})))
    return ScanOutcome(row.key, "written", time.perf_counter() - start, timings,
                       flags=str(qc["registration_check"]["flags"]))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


@dataclass(frozen=True)
class RunSummary:
    outcomes: tuple[ScanOutcome, ...]
    manifest_problems: tuple[str, ...]

    @property
    def failed(self) -> tuple[ScanOutcome, ...]:
        return tuple(o for o in self.outcomes if o.status == "failed")

    @property
    def ok(self) -> bool:
        return not self.failed and not self.manifest_problems

    def lines(self) -> list[str]:
        counts = {s: sum(o.status == s for o in self.outcomes) for s in ("written", "relabelled", "skipped", "failed")}
        lines = [f"{len(self.outcomes)} scan(s): {counts['written']} written, {counts['relabelled']} relabelled "
                 f"(labels only), {counts['skipped']} skipped (current), "
                 f"{counts['failed']} failed; {len(self.manifest_problems)} manifest problem(s); "
                 f"{sum(bool(o.flags) for o in self.outcomes)} flagged by the registration check"]
        written = [o for o in self.outcomes if o.status == "written"]
        if written:
            steps = sorted({step for o in written for step in o.timings_s})
            mean = {s: np.mean([o.timings_s.get(s, 0.0) for o in written]) for s in steps}
            lines.append("mean seconds per written scan: " + ", ".join(f"{s} {mean[s]:.2f}" for s in steps))
        lines.extend(f"FAILED {o.key}: {o.error}" for o in self.failed)
        lines.extend(f"FLAGGED {o.key}: registration check {o.flags} outside the preset's limits (python -m cache "
                     "info shows the figures)" for o in self.outcomes if o.flags)
        lines.extend(f"MANIFEST {problem}" for problem in self.manifest_problems)
        return lines


def select_rows(rows: tuple[ManifestRow, ...], shard: str) -> list[ManifestRow]:
    k, n = parse_shard(shard)
    return sorted(rows, key=lambda r: r.key)[k::n]


def run_pipeline(settings: PreprocessSettings, build: BuildSettings, suv: SuvSettings,
                 dataset: DatasetConfig) -> RunSummary:
    """Preprocess the dataset's scans (those of this shard) into its cache folder."""
    device = resolve_device(settings.device).type  # before any work; a plain string travels to the workers
    manifest = read_manifest(dataset.manifest_path, dataset.root, dataset.rule_set)
    rows = select_rows(manifest.rows, settings.shard)
    check_writable(dataset.cache_dir)  # a read-only folder fails now, not after registration
    remove_dead_temps(dataset.cache_dir)
    bank_path = dataset.atlas_bank_path
    if not bank_path.is_dir():
        raise FileNotFoundError(f"atlas bank {bank_path} not found (dataset {dataset.name}, setting 'atlas_bank')")
    workers = max(1, min(settings.workers, len(rows) or 1))
    context = RunContext(dataset, build, suv, settings.force, device, file_digest(bank_path), settings.atlas_batch,
                         scan_memory_budget_gb(settings.max_memory_gb, workers, device))
    outcomes = []
    bar = progress(total=len(rows), desc=f"preprocess {dataset.name}", unit="scan")

    def report(outcome: ScanOutcome) -> None:
        outcomes.append(outcome)
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in outcome.timings_s.items() if v >= 0.05 and k != "total")
        bar.write(f"{outcome.status:>7} {outcome.key} ({outcome.seconds:.1f}s{': ' + steps if steps else ''})"
                  + (f"\n        cause: {outcome.error}" if outcome.error else ""))
        bar.update(1)

    if workers == 1:
        for row in rows:
            report(process_scan(row, context))
    else:
        threads = max(1, (os.cpu_count() or 1) // workers)
        with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(threads,)) as pool:
            for outcome in pool.map(process_scan, rows, [context] * len(rows)):
                report(outcome)
    bar.close()
    return RunSummary(tuple(outcomes), tuple(str(issue) for issue in manifest.issues))
