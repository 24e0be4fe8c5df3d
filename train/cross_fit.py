"""TS3's head fitted on station logits its classifier did not train on (`head_cross_fit` = K parts).

The fold's TS1 learnt the fold's training scans: its logits there are surer than on scans it never saw, and a head
fitted to them learns to trust them more than it should on the test scans (benchmarks/README.md, "TS3
cross-fitted"). With K parts, TS1 is trained again K times with its own settings and validation part, each time
without one part of the fold's training patients, and each training scan's logits in the head's bank come from
the model that left its part out. Test scans are still staged on the fold's TS1.

The part runs live in `<TS3 run>/fold<K>/cross-fit/part<k>of<K>/` (a TS1 run folder each, and `left_out.json`);
a complete one with the same settings and the same patients left out is reused.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from cache.atomic import write_text_atomic
from train.checkpoint import load_checkpoint
from train.data import CohortPart
from train.inference import settings_from_checkpoint
from train.settings import TrainSettings, changed_settings

PARTS_DIR = "cross-fit"
LEFT_OUT_FILE = "left_out.json"


def deal_parts(part: CohortPart, n_parts: int, seed: int) -> list[tuple[str, ...]]:
    """The part's patients dealt into `n_parts` parts, each N-stage (unknown counts as one) spread evenly over
    them; the same for the same patients and seed."""
    stage = dict(zip(part.patient_ids, part.n_stage.tolist(), strict=True))
    patients = sorted(stage)
    shuffled = np.random.default_rng([seed, 4]).permutation(len(patients))
    # stable sort: random order within a stage, stages one after another, then dealt round the parts
    dealt = sorted(shuffled.tolist(), key=lambda i: stage[patients[i]])
    return [tuple(sorted(patients[i] for i in dealt[k::n_parts])) for k in range(n_parts)]


def part_run_dir(run_dir: Path, k: int, n_parts: int) -> Path:
    return run_dir / PARTS_DIR / f"part{k + 1}of{n_parts}"


def part_settings(ts3: TrainSettings, ts1: TrainSettings) -> TrainSettings:
    """The fold's TS1 settings for a part run: same model, schedule and seed; where and how fast from TS3's."""
    return dataclasses.replace(
        ts1, fold=ts3.fold, dataset=ts3.dataset, root=ts3.root, cache_root=ts3.cache_root, runs_dir=ts3.runs_dir,
        run_name="", init_from="", resume=False, overwrite=True, stop_after_epoch=0, device=ts3.device,
        progress=ts3.progress)


def part_run_complete(run_dir: Path, settings: TrainSettings, left_out: tuple[str, ...]) -> bool:
    """A part run to reuse: finished (test predictions written), same settings, same patients left out."""
    marker, best = run_dir / LEFT_OUT_FILE, run_dir / "best.pt"
    if not (marker.is_file() and best.is_file() and (run_dir / "predictions_test.csv").is_file()):
        return False
    if tuple(json.loads(marker.read_text())["patients"]) != left_out:
        return False
    return not changed_settings(settings_from_checkpoint(load_checkpoint(best)), settings)


def mark_part_run(run_dir: Path, left_out: tuple[str, ...]) -> None:
    """Written last, so a part run killed before it is trained again."""
    write_text_atomic(run_dir / LEFT_OUT_FILE, json.dumps({"patients": list(left_out)}, indent=1))


def part_rows(patient_ids: tuple[str, ...], parts: list[tuple[str, ...]]) -> list[np.ndarray]:
    """Positions of each part's scans in a cohort part of these per-scan patient ids."""
    ids = np.asarray(patient_ids)
    return [np.flatnonzero(np.isin(ids, left_out)) for left_out in parts]
