"""`python -m evaluate experiments --dataset NAME`: the paper's study as one command.

Trains every row of `evaluate.experiment_plan.ROWS` on the stored folds (reusing complete runs, resuming
interrupted ones), scores them with every registered baseline on the same test scans, and writes one report folder:
report.md, CSV tables, Fig. 9 confusion matrices and the measured Table 7 (see `evaluate.experiment_report`).

A fold run is complete when its folder holds `experiment_run.json` with the run's key and its test predictions;
`--force` retrains. A partly trained fold run continues from its last checkpoint (the trainer's `--resume`).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from cache.atomic import write_text_atomic
from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import Study, StudyRow, load_study, stage_overrides, study_rows
from cache.devices import resolve_device
from cache.sampler import PatchSampler
from cache.settings import values_from_mapping
from cache.stations import station_names
from evaluate.baselines.registry import BASELINES, ScoredBaseline, names_of, score_baselines
from evaluate.cohort import CohortData, load_evaluation_cohort, study_cache_files
from evaluate.comparison import EvaluationCohort, MethodPredictions, MethodResult, compare_methods, evaluate_method
from evaluate.evaluation import parse_folds, per_dataset_results, restrict, restrict_method
from evaluate.experiment_plan import (
    ExperimentSettings,
    FoldRun,
    PlannedRun,
    data_key,
    plan_runs,
    schedule_overrides,
)
from evaluate.experiment_report import StudyReport, write_study_report
from evaluate.model_predictions import model_method
from evaluate.settings import EvaluateSettings
from evaluate.timing_table import (
    StepTime,
    per_scan,
    preprocessing_steps,
    recorded_peak_memory,
    recorded_step_times,
)
from train.cross_fit import PARTS_DIR
from train.data import open_study_part, sampler_settings
from train.folds import Fold, fold_file_path, load_or_make_study_folds
from train.inference import load_trained, predict
from train.loop import run_training
from train.settings import TrainSettings, preset_values

MARKER = "experiment_run.json"
STOPPED = 3  # exit status of a study stopped by --stop-after-runs


def is_complete(fold_dir: Path, key: str) -> bool:
    marker = fold_dir / MARKER
    return (marker.is_file() and json.loads(marker.read_text()).get("key") == key
            and (fold_dir / "predictions_test.csv").is_file())


def finished_unmarked(fold_dir: Path) -> bool:
    """Test predictions written after the last checkpoint: the trainer ran to its end (it writes them last)."""
    predictions, last = fold_dir / "predictions_test.csv", fold_dir / "last.pt"
    return (not (fold_dir / MARKER).is_file() and predictions.is_file() and last.is_file()
            and predictions.stat().st_mtime_ns >= last.stat().st_mtime_ns)


def training_time(fold_dir: Path) -> tuple[float, int]:
    """(seconds over all epochs, epochs trained) from the trainer's metrics.csv (survives resumes; its epoch 0 is
    the start's validation); the seconds include a cross-fitted TS3's part runs (train.cross_fit)."""
    def rows(path: Path) -> list[dict]:
        with open(path, newline="") as f:
            return list(csv.DictReader(f))

    own = rows(fold_dir / "metrics.csv")
    parts = [r for path in sorted(fold_dir.glob(f"{PARTS_DIR}/*/metrics.csv")) for r in rows(path)]
    return sum(float(r["seconds"]) for r in own + parts), sum(int(r["epoch"]) > 0 for r in own)


def mark_complete(fold_dir: Path, planned: PlannedRun, fold: int, reused: bool = False) -> FoldRun:
    seconds, epochs = training_time(fold_dir)
    marker = {"key": planned.key, "row": planned.row.name, "stage": planned.row.stage, "fold": fold,
              "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"), "train_seconds": seconds,
              "epochs": epochs}
    write_text_atomic(fold_dir / MARKER, json.dumps(marker, indent=1))
    return FoldRun(planned.row.name, fold, fold_dir, reused, seconds, epochs)


def train_runs(runs: dict[str, PlannedRun], folds: tuple[int, ...], study: ExperimentSettings
               ) -> list[FoldRun] | None:
    """Every row on every fold, parents first; None when `stop_after_runs` stopped the study early."""
    done, trained = [], 0
    for planned in runs.values():
        for fold in folds:
            fold_dir = planned.run_dir / f"fold{fold}"
            if is_complete(fold_dir, planned.key) and not study.force:
                seconds, epochs = training_time(fold_dir)
                done.append(FoldRun(planned.row.name, fold, fold_dir, True, seconds, epochs))
                print(f"{planned.row.name}, fold {fold}: complete in {fold_dir}, reused")
                continue
            if finished_unmarked(fold_dir) and not study.force:  # killed between the trainer's end and the marker
                done.append(mark_complete(fold_dir, planned, fold, reused=True))
                continue
            (fold_dir / MARKER).unlink(missing_ok=True)
            resume = (fold_dir / "last.pt").is_file() and not study.force
            print(f"{planned.row.name}, fold {fold}: {'resuming' if resume else 'training'} in {fold_dir}")
            status = run_training(planned.for_fold(fold, resume=resume, overwrite=not resume))
            if status != 0:
                raise RuntimeError(f"{planned.row.name}, fold {fold}: the trainer exited with status {status}; "
                                   f"see the log above, then rerun the study (it resumes)")
            done.append(mark_complete(fold_dir, planned, fold))
            trained += 1
            if study.stop_after_runs and trained >= study.stop_after_runs:
                print(f"stopping after {trained} run(s) as asked (--stop-after-runs); rerun to continue")
                return None
    return done


def evaluate_settings(study: ExperimentSettings) -> EvaluateSettings:
    """The report's settings: the dataset's `[evaluate]` table, then the study's flags."""
    preset = values_from_mapping(EvaluateSettings, stage_overrides(study.dataset, "evaluate"),
                                 f"[evaluate] of dataset {study.dataset!r}")
    return EvaluateSettings(**{**preset, "dataset": study.dataset, "root": study.root,
                               "cache_root": study.cache_root, "lesion_source": study.lesion_source,
                               "n_permutations": study.n_permutations, "n_bootstrap": study.n_bootstrap,
                               "seed": study.seed, "device": study.device})


@dataclass(frozen=True)
class StudyPlan:
    """The dataset (a study of one) or study, its stored folds, the folds studied and every row's planned run."""

    config: Study
    rows: list[StudyRow]
    fold_sets: list[Fold]
    fold_file: Path
    folds: tuple[int, ...]
    expected: dict
    runs: dict[str, PlannedRun]


def plan_study(study: ExperimentSettings) -> StudyPlan:
    """Read the dataset or study and its folds (made once when absent) and plan every row's run."""
    config = load_study(study.dataset, root=study.root or None, cache_root=study.cache_root or None)
    rows = study_rows(config)  # rows with problems are logged and left out, as the trainer does
    fold_sets, fold_file = study_folds(study, config, rows)
    folds = parse_folds(study.folds, tuple(f.index for f in fold_sets))
    expected = expected_settings(build_settings_for(study.dataset))
    return StudyPlan(config, rows, fold_sets, fold_file, folds, expected,
                     plan_runs(study, data_key(expected, fold_file)))


def inference_times(plan: StudyPlan, device: torch.device) -> tuple[StepTime, StepTime]:
    """TS1's (centroid patch sampling, inference + rule-based staging), seconds per test scan of the folds.

    `predict` cuts the patches again, so inference is its time less the sampling time.
    """
    sampling = inference = 0.0
    n_scans = 0
    names = station_names()
    for fold in plan.folds:
        model, settings = load_trained(plan.runs["TS1"].run_dir / f"fold{fold}", device)
        part = open_study_part(plan.rows, plan.fold_sets[fold].test, plan.expected)
        scans, stations = np.nonzero(part.present)
        sampler = PatchSampler(part.reader, sampler_settings(settings, 0))
        sampler.centroid(scans[:1], [names[s] for s in stations[:1]])  # opens the files, loads compiled code
        started = time.perf_counter()
        sampler.centroid(scans, [names[s] for s in stations])
        sampled = time.perf_counter()
        predict(model, part, settings, device)
        finished = time.perf_counter()
        sampling += sampled - started
        inference += max(0.0, (finished - sampled) - (sampled - started))
        n_scans += len(part)
        part.reader.close()
    source = f"timed here on the test scans ({device})"
    return (per_scan("TS1", "patch sampling (centroid patch of each station)", sampling, n_scans, source),
            per_scan("TS1", "inference + rule-based N-staging", inference, n_scans, source))


def study_folds(study: ExperimentSettings, config: Study, rows: list[StudyRow]) -> tuple[list[Fold], Path]:
    """The stored folds every row trains on (made once, by the trainer's rule, when absent) and their file."""
    preset, _ = preset_values("ts1", study.dataset)
    ts1 = TrainSettings(**{**preset, **schedule_overrides(study)})
    path = fold_file_path(study.runs_dir, study.dataset, config.label_column)
    return load_or_make_study_folds(path, config, rows, ts1.n_folds, ts1.val_fraction, ts1.fold_seed), path


def score_rows(runs: dict[str, PlannedRun], data: CohortData, folds: tuple[int, ...], config: Study,
               settings: EvaluateSettings
               ) -> tuple[EvaluationCohort, dict[str, MethodPredictions], list[ScoredBaseline]]:
    """Test predictions of every trained row and every registered baseline on the scans of `folds`, and the
    baselines as scored over the whole cohort (their cutoff choice, prediction and staging timed)."""
    keep = np.isin(data.cohort.fold, folds)
    methods = {name: model_method(planned.run_dir, data, folds, config,
                                  dataclasses.replace(settings, method_name=name)) for name, planned in runs.items()}
    baselines = score_baselines(data, settings, config.rule_set)
    methods.update({b.method.name: restrict_method(b.method, keep) for b in baselines})
    return restrict(data.cohort, keep), methods, baselines


def run_experiments(study: ExperimentSettings) -> int:
    """Train what is missing, evaluate every row, write the report; returns the exit status."""
    started = time.monotonic()
    plan = plan_study(study)
    config, folds, runs = plan.config, plan.folds, plan.runs
    fold_runs = train_runs(runs, folds, study)
    if fold_runs is None:
        return STOPPED
    trained_at = time.monotonic()

    settings = evaluate_settings(study)
    test_fold = {p: f.index for f in plan.fold_sets for p in f.test}
    features_started = time.perf_counter()
    data = load_evaluation_cohort(study_cache_files(config), test_fold, config.label_column, settings, plan.expected,
                                  config)
    features_seconds = time.perf_counter() - features_started
    cohort, methods, baselines = score_rows(runs, data, folds, config, settings)
    results: dict[str, MethodResult] = {name: evaluate_method(cohort, m, settings.n_bootstrap, settings.seed)
                                        for name, m in methods.items()}
    members = per_dataset_results(cohort, methods, settings.n_bootstrap, settings.seed)
    rng = np.random.default_rng(settings.seed)
    tests = {pair: compare_methods(cohort, methods[pair[0]], methods[pair[1]], rng, settings.n_permutations)
             for pair in comparison_pairs(methods)}

    test_paths = [p for p, f in zip(data.paths, data.cohort.fold, strict=True) if f in folds]
    device = resolve_device(study.device)
    steps = timing_steps(plan, device, test_paths, features_seconds, baselines, len(data.cohort.scan_ids))
    report = StudyReport(study=study, config=config, runs=runs, fold_runs=fold_runs, folds=folds,
                         fold_file=plan.fold_file, cohort=cohort, methods=methods, results=results, tests=tests,
                         member_results=members,
                         timings=steps, n_lesions=data.n_lesions, train_seconds=trained_at - started,
                         total_seconds=time.monotonic() - started, device=str(device))
    out = study.output_dir
    path = write_study_report(out, report)
    print(f"\nreport: {path} ({time.monotonic() - started:.0f} s)")
    return 0


def comparison_pairs(methods: dict[str, MethodPredictions]) -> list[tuple[str, str]]:
    """The paired tests the paper reports: TS1 against each baseline and against TS2/TS3 (Table 4), weight-map
    vs centroid TS1 (Table 5), TS2 with vs without pseudo-labels (Table 6); and TS2 against TS3, which the
    paper's "TS2 stages best" needs too."""
    baselines = names_of(methods)
    return ([("TS1", b) for b in baselines] + [("TS2", "TS1"), ("TS3", "TS1"), ("TS2", "TS3"),
                                               ("TS1", "TS1, centroid patch"), ("TS2", "TS2, no pseudo-labels")])


def timing_steps(plan: StudyPlan, device: torch.device, test_paths: list[Path], features_seconds: float,
                 baselines: list[ScoredBaseline], n_all: int) -> list[StepTime]:
    """Table 7 rows: recorded preprocessing per pipeline, then each pipeline's own steps (`n_all` scans had
    their baseline features computed; the baselines' seconds cover them all)."""
    recorded = recorded_step_times(test_paths)
    sampling, inference = inference_times(plan, device)
    steps = [*preprocessing_steps(recorded, recorded_peak_memory(test_paths)), sampling, inference]
    features = "timed here over every scan of the cohort"
    for scored in baselines:
        name, baseline = scored.method.name, BASELINES[scored.method.baseline]
        if baseline.uses_lesion_features:
            steps.append(per_scan(name, "baseline features: SUVmax, lesion masks/segmentation, station overlap "
                                        "(all lesion sources)", features_seconds, n_all, features))
        steps.append(per_scan(name, baseline.timing_step, scored.seconds, n_all, features))
    return steps
