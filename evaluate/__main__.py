"""`python -m evaluate [report] --dataset NAME --run RUN_DIR [--folds 0-4] [--out DIR]` writes a cohort report;
`python -m evaluate predict --ct CT --pet PET --totalseg MASKS --model RUN_DIR/fold0` stages one new scan;
`python -m evaluate experiments --dataset NAME [--folds 0-4] [--out DIR] [--force]` runs the paper's Tables 4-7.

Settings: dataclass defaults < the dataset config's `[evaluate]` table (report) < flags.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import argparse_dataclass

from cache.dataset import stage_overrides
from cache.settings import settings_from_namespace, settings_parents
from evaluate.experiment_plan import ExperimentSettings
from evaluate.settings import EvaluateSettings, PredictSettings

COMMANDS = ("report", "predict", "experiments")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m evaluate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="{report,predict,experiments}")
    commands.add_parser("report", parents=settings_parents(EvaluateSettings),
                        help="metrics, baselines, paired tests and figures of a cross-validated run (default)")
    commands.add_parser("predict", parents=settings_parents(PredictSettings),
                        help="stage one new PET/CT scan with a trained fold's model")
    commands.add_parser("experiments", parents=settings_parents(ExperimentSettings),
                        help="train and evaluate every row of the paper's Tables 4-6 on the same folds, with "
                             "Table 7 timings, as one report (complete runs reused)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "-h", "--help"):
        argv = ["report", *argv]
    namespace = build_parser().parse_args(argv)
    if namespace.command == "predict":
        from evaluate.predict import run_predict

        return run_predict(settings_from_namespace(namespace, PredictSettings))
    if namespace.command == "experiments":
        from evaluate.experiments import run_experiments

        return run_experiments(settings_from_namespace(namespace, ExperimentSettings))
    from evaluate.evaluation import run_evaluation

    dataset = namespace.dataset if namespace.dataset is not argparse_dataclass.MISSING else EvaluateSettings.dataset
    preset = stage_overrides(dataset, "evaluate")
    return run_evaluation(settings_from_namespace(namespace, EvaluateSettings, preset,
                                                  source=f"[evaluate] of dataset {dataset!r}"))


if __name__ == "__main__":
    sys.exit(main())
