"""`python -m train ts1|ts2|ts3 --fold K [--dataset NAME] [any setting]`: train one stage on one fold.

Settings: defaults < `configs/train/<stage>.toml` < the dataset config's `[train]` table < `--config FILE` < flags;
`--help` after the stage and dataset shows the values that apply. The run's log is `<run folder>/train.log`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cache.cli import Command, exit_status
from train.settings import TrainSettings, train_presets


def train(settings: TrainSettings) -> int:
    from train.loop import run_training

    return run_training(settings)


COMMAND = Command("python -m train", "Train one stage (TS1, TS2 or TS3) on one cross-validation fold.",
                  (TrainSettings,), train, presets=train_presets, required=("stage",),
                  log_file=lambda settings: settings.run_dir / "train.log",
                  print_settings=False)  # run_training prints them (the experiments call it too)


def main(argv: Sequence[str] | None = None) -> int:
    """Train; exit status 0 (failures raise: `cli` turns them into one `error:` line)."""
    return COMMAND.run(argv)


def cli(argv: Sequence[str] | None = None) -> int:
    return exit_status(main, argv)


if __name__ == "__main__":
    sys.exit(cli())
