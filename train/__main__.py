"""python -m train ts1|ts2|ts3 --fold K [--dataset NAME] [--resume] [--device auto|cpu|cuda] [any setting]."""

from __future__ import annotations

import sys

from train.loop import run_training
from train.settings import parse_train_settings


def main(argv: list[str] | None = None) -> int:
    settings = parse_train_settings(argv)
    return run_training(settings)


if __name__ == "__main__":
    sys.exit(main())
