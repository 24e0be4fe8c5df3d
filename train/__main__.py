"""`python -m train ts1|ts2|ts3 --fold K [--dataset NAME] [any setting]`: train one stage on one fold.

Settings: defaults < `configs/train/<stage>.toml` < the dataset config's `[train]` table < `--config FILE` < flags;
`--help` after the stage and dataset shows the values that apply. The run's log is `<run folder>/train.log`.
`python -m train predict --run RUNS/DATASET/ts1 [--rule-set tnm8]` predicts every fold's validation and test scans
again from best.pt (train/predict.py); `python -m train export RUN OUT.zip` packs a model bundle (train/bundle.py).
"""

from __future__ import annotations

import sys

from cache.cli import Command, CommandGroup
from train.bundle import ExportSettings
from train.predict import RepredictSettings
from train.settings import TrainSettings, train_presets


def train(settings: TrainSettings) -> int:
    from train.loop import run_training

    return run_training(settings)


COMMAND = Command("python -m train", "Train one stage (TS1, TS2 or TS3) on one cross-validation fold.",
                  (TrainSettings,), train, presets=train_presets, required=("stage",),
                  log_file=lambda settings: settings.run_dir / "train.log",
                  print_settings=False)  # run_training prints them (the experiments call it too)


def repredict(settings: RepredictSettings) -> int:
    from train.predict import run_repredict

    return run_repredict(settings)


PREDICT = Command("python -m train predict", "Predict every fold's validation and test scans again from best.pt.",
                  (RepredictSettings,), repredict, required=("run",))
def export(settings: ExportSettings) -> int:
    from train.bundle import run_export

    return run_export(settings)


EXPORT = Command("lnstage-export-model", "Pack a trained run (every fold) with its preprocessing description into a "
                 "zip that predict accepts.", (ExportSettings,), export, required=("run", "out"))
GROUP = CommandGroup("python -m train", "Train one stage on one fold, or predict a trained run again.", {
    "train": (COMMAND, "train ts1|ts2|ts3 on one fold: python -m train ts1 --fold 0"),
    "predict": (PREDICT, "predict every fold's validation and test scans again (--rule-set re-stages TS1)"),
    "export": (EXPORT, "pack a trained run into a model bundle (zip) for predict (lnstage-export-model)"),
}, default="train")


main = GROUP.run  # Train (or predict); failures raise
export_cli = EXPORT.cli  # the console script lnstage-export-model
cli = GROUP.cli  # for python -m and the console script: a failure is one `error:` line, exit 2 or 1


if __name__ == "__main__":
    sys.exit(cli())
