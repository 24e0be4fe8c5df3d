"""The trained method's test predictions, read from a run's `fold<K>/predictions_test.csv` files.

The CSV format is train's (documented in `train/inference.py`); each fold's test patients are the patients of
its predictions file, so the baselines are scored on exactly the scans the model was tested on.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from cache.dataset import Study
from cache.stations import STATION_CUTOFF, station_names
from evaluate.cohort import CohortData
from evaluate.comparison import MethodPredictions
from evaluate.settings import EvaluateSettings

PREDICTIONS_FILE = "predictions_test.csv"


class RunPredictionsError(ValueError):
    """A run folder without usable test predictions; the message says which file and what to run."""


def _fold_dirs(run: Path) -> dict[int, Path]:
    if not run.is_dir():
        raise RunPredictionsError(f"run folder {run} not found; pass --run runs/<dataset>/<run name>")
    folds = {}
    for child in run.iterdir():
        match = re.fullmatch(r"fold(\d+)", child.name)
        if match and (child / PREDICTIONS_FILE).is_file():
            folds[int(match[1])] = child
    if not folds:
        raise RunPredictionsError(f"{run}: no fold<K>/{PREDICTIONS_FILE}; train first, e.g. python -m train ts1 "
                                  "--fold 0")
    return dict(sorted(folds.items()))


def read_fold_predictions(run: Path) -> dict[int, pd.DataFrame]:
    """Fold -> its test predictions table (17 rows per scan), refusing a patient tested in two folds."""
    tables = {k: pd.read_csv(d / PREDICTIONS_FILE, dtype={"patient_id": str, "scan_id": str, "tumor_side": str},
                             keep_default_na=False, na_values={"probability": [""]})
              for k, d in _fold_dirs(run).items()}
    seen: dict[str, int] = {}
    for k, table in tables.items():
        for patient in table["patient_id"].unique():
            if patient in seen:
                raise RunPredictionsError(f"{run}: patient {patient} is a test patient of folds {seen[patient]} "
                                          f"and {k}; the folds of this run do not come from one fold file")
            seen[patient] = k
    return tables


def run_folds(run: Path) -> dict[int, tuple[str, ...]]:
    """Fold -> its test patient ids, for every fold of `run` with a predictions file."""
    return {k: tuple(sorted(t["patient_id"].unique())) for k, t in read_fold_predictions(run).items()}


def fold_file(run: Path, label_column: str) -> Path:
    """The fold file train made for the run's dataset: `<runs_dir>/<dataset>/folds_<label_column>.json`."""
    return run.parent / f"folds_{label_column}.json"


def test_folds(run: Path, label_column: str) -> dict[str, int]:
    """Patient -> test fold over the whole dataset: from the run's fold file, so that the baselines have every
    fold's training scans even when the run has predictions for some folds only; without a fold file, from the
    run's predictions files (which must then cover every fold). The run's test patients must match the file."""
    by_run = run_folds(run)
    path = fold_file(run, label_column)
    if not path.is_file():
        return {p: k for k, patients in by_run.items() for p in patients}
    from train.folds import read_fold_file

    folds, _ = read_fold_file(path)
    by_file = {f.index: tuple(sorted(f.test)) for f in folds}
    for k, patients in by_run.items():
        if by_file.get(k) != patients:
            raise RunPredictionsError(f"{run}/fold{k}/{PREDICTIONS_FILE}: its test patients differ from fold {k} of "
                                      f"{path}; the run was trained on another split: retrain it")
    return {p: k for k, patients in by_file.items() for p in patients}


def model_method(run: Path, data: CohortData, folds: tuple[int, ...], config: Study,
                 settings: EvaluateSettings) -> MethodPredictions:
    """The run's test predictions for the cohort scans of `folds`, in cohort order.

    Station status is the run's (probability >= STATION_CUTOFF); a station absent from a scan's cache file is
    benign with probability 0. The N-stage is the run's (rule-based for TS1, the head's for TS2/TS3).
    """
    tables = read_fold_predictions(run)
    table = pd.concat([tables[k] for k in folds], ignore_index=True)
    stages = sorted(table["stage"].unique())
    rule_sets = sorted(table["rule_set"].unique())
    if rule_sets != [config.rule_set]:
        raise RunPredictionsError(f"{run}: predictions staged with rule set(s) {rule_sets}, the dataset "
                                  f"{config.name} says {config.rule_set!r}; retrain, or evaluate with a dataset "
                                  "config of that rule set")
    names = station_names()
    keep = np.isin(data.cohort.fold, folds)
    keys = [(p, s) for p, s, k in zip(data.cohort.patient_ids, data.cohort.scan_ids, keep, strict=True) if k]
    truth = data.cohort.station_true[keep]
    table = table.set_index(["patient_id", "scan_id", "station_index"]).sort_index()
    n = len(keys)
    pred, score, n_pred = np.zeros((n, len(names)), np.int8), np.zeros((n, len(names))), np.zeros(n, np.int64)
    for i, key in enumerate(keys):
        try:
            rows = table.loc[key]
        except KeyError:
            raise RunPredictionsError(f"{run}: no test prediction for scan {key[0]}/{key[1]}; the run's folds and "
                                      "the cache differ: retrain, or rebuild the cache") from None
        if not np.array_equal(rows["station_true"].to_numpy(), truth[i]):
            raise RunPredictionsError(f"{run}: station labels of {key[0]}/{key[1]} differ between the predictions "
                                      f"file and the cache (label column {config.label_column}); the manifest "
                                      "changed since training")
        probability = rows["probability"].to_numpy(dtype=np.float64)
        pred[i] = np.clip(rows["station_pred"].to_numpy(), 0, 1)
        score[i] = np.nan_to_num(probability, nan=0.0)
        n_pred[i] = int(rows["n_pred"].iloc[0])
    name = settings.method_name or "+".join(s.upper() for s in stages)
    return MethodPredictions(name=name, station_pred=pred, station_score=score, n_pred=n_pred,
                             notes={"run": str(run), "station cutoff": f"probability >= {STATION_CUTOFF:g}"})
