"""`python -m evaluate [report] --run RUN_DIR [--dataset NAME] [--folds 0-4] [--out DIR]` writes a cohort report;
`python -m evaluate predict --ct CT --pet PET [--totalseg MASKS] --model RUN_DIR[/fold0]` stages one new scan;
`python -m evaluate batch --input DIR_OR_MANIFEST --out DIR --model RUN_DIR` (`lnstage-predict`) stages many;
`python -m evaluate experiments --dataset NAME [--folds 0-4] [--out DIR] [--force]` runs the paper's Tables 4-7.

Settings: dataclass defaults < the dataset config's `[evaluate]` table (report) < `--config FILE` < flags. Each
command logs to `report.log`, `predict.log` or `experiments.log` in its output folder.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cache.cli import Command, CommandGroup, Preset
from cache.dataset import stage_overrides
from evaluate.batch_predict import BatchPredictSettings
from evaluate.experiment_plan import ExperimentSettings
from evaluate.settings import EvaluateSettings, PredictSettings


def report_presets(given: Mapping[str, Any]) -> list[Preset]:
    dataset = given.get("dataset", EvaluateSettings.dataset)
    return [Preset(f"dataset {dataset!r} [evaluate]", EvaluateSettings, stage_overrides(dataset, "evaluate"))]


def report(settings: EvaluateSettings) -> int:
    from evaluate.evaluation import run_evaluation

    return run_evaluation(settings)


def predict(settings: PredictSettings) -> int:
    from evaluate.predict import run_predict

    return run_predict(settings)


def batch(settings: BatchPredictSettings) -> int:
    from evaluate.batch_predict import run_batch_predict

    return run_batch_predict(settings)


def experiments(settings: ExperimentSettings) -> int:
    from evaluate.experiments import run_experiments

    return run_experiments(settings)


REPORT = Command("python -m evaluate report", "Metrics, baselines, paired tests and figures of a cross-validated run.",
                 (EvaluateSettings,), report, presets=report_presets, required=("run",),
                 log_file=lambda s: s.output_dir / "report.log",
                 print_settings=False)  # run_evaluation prints them (experiments call it too)
PREDICT = Command("python -m evaluate predict", "Stage one new PET/CT scan with a trained model (folds averaged).",
                  (PredictSettings,), predict, required=("ct", "pet", "model"),
                  log_file=lambda s: s.output_dir / "predict.log")
BATCH = Command("lnstage-predict", "Stage many PET/CT scans (a folder or a manifest) with every fold's model.",
                (BatchPredictSettings,), batch, required=("input", "out", "model"),
                log_file=lambda s: Path(s.out) / "predict.log")
EXPERIMENTS = Command(
    "python -m evaluate experiments",
    "Train and evaluate every row of the paper's Tables 4-6 on the same folds, with Table 7 timings, as one report "
    "(complete runs are reused).",
    (ExperimentSettings,), experiments,
    log_file=lambda s: s.output_dir / "experiments.log")
GROUP = CommandGroup("python -m evaluate", "Evaluate trained runs, stage new scans, run the paper's study.", {
    "report": (REPORT, "metrics, baselines, paired tests and figures of a cross-validated run"),
    "predict": (PREDICT, "stage one new PET/CT scan with a trained model"),
    "batch": (BATCH, "stage many scans (folder or manifest), folds averaged, with a summary CSV (lnstage-predict)"),
    "experiments": (EXPERIMENTS, "train and evaluate every row of the paper's Tables 4-6 as one report"),
}, default="report")


main = GROUP.run  # Run the subcommand (`report` when none is named); failures raise
batch_cli = BATCH.cli  # the console script lnstage-predict
cli = GROUP.cli  # for python -m and the console script: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
