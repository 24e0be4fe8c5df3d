"""python -m train ts1|ts2|ts3 --fold K [--dataset NAME] [--resume] [--device auto|cpu|cuda] [any setting]."""

from __future__ import annotations

import sys

from cache.manifest import ManifestError
from cache.reader import CacheError
from cache.settings import SettingsError
from train.checkpoint import CheckpointError
from train.data import MissingCacheError
from train.folds import FoldError
from train.loop import RunError, run_training
from train.settings import parse_train_settings

# Errors whose message already names the file, the setting and the fix: printed without a traceback.
USER_ERRORS = (SettingsError, ManifestError, CacheError, MissingCacheError, FoldError, CheckpointError, RunError)


def main(argv: list[str] | None = None) -> int:
    settings = parse_train_settings(argv)
    return run_training(settings)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
