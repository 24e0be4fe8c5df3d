"""`python -m train predict --run RUNS/DATASET/ts1 [--rule-set tnm8]`: every fold's validation and test scans
predicted again from its `best.pt`, without training.

Each fold's checkpoint carries its settings (dataset, fold, patch, windows); the folds come from the fold file
beside the run (`<runs_dir>/<dataset>/`), so the scans are those the run was evaluated on. The predictions CSVs
(format in train/inference.py) land in `--out` (default: a sibling run folder `<run>-repredicted`, or
`<run>-<rule set>` with `--rule-set`), as `fold<K>/predictions_{val,test}.csv`, which `python -m evaluate report
--run OUT` reads. `--rule-set` re-stages TS1 (rule-based N-stage from the station predictions); TS2/TS3 stage
with their learned head, so it is refused for them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cache.devices import Device, resolve_device
from cache.stations import rule_set_names

if TYPE_CHECKING:
    import torch

SPLITS = ("val", "test")


class RepredictError(ValueError):
    """A run folder or option that cannot be re-predicted; the message says what to do."""


@dataclass(frozen=True)
class RepredictSettings:
    """Which trained run to predict again, with which rule set, and where the predictions go."""

    run: str = field(default="", metadata={"help": "run folder holding fold<K>/best.pt (e.g. runs/demo/ts1)"})
    rule_set: str = field(default="", metadata={"help": "TS1: stage with this rule set (empty: the dataset's)"})
    out: str = field(default="", metadata={"help": "output run folder (empty: <run>-repredicted or <run>-<rule set>)"})
    folds: str = field(default="", metadata={"help": "comma-separated folds (empty: every fold<K> with a best.pt)"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})


def fold_dirs(run: Path, folds: str) -> list[Path]:
    """The run's fold folders with a best.pt, in fold order (all, or those listed in `folds`)."""
    if not run.is_dir():
        raise RepredictError(f"--run {run}: no such folder; pass the folder that holds fold0/, fold1/, ...")
    found = {int(p.name[4:]): p for p in run.glob("fold*") if p.name[4:].isdigit() and (p / "best.pt").is_file()}
    wanted = sorted(found) if not folds else [int(k) for k in folds.split(",")]
    missing = [k for k in wanted if k not in found]
    if missing or not wanted:
        raise RepredictError(f"--run {run}: no best.pt for fold(s) {missing or 'any'}; train them first "
                             f"(python -m train <stage> --fold K) or pass --folds with those that exist")
    return [found[k] for k in wanted]


def load_models(path: Path, device: str = "cpu") -> list:
    """The trained models (`train.inference.TrainedModel`) of a fold folder (its best.pt) or of every fold of a
    run folder, in fold order."""
    from train.inference import load_model

    if (path / "best.pt").is_file() or path.is_file():  # a fold folder or a checkpoint file
        return [load_model(path, device)]
    return [load_model(fold, device) for fold in fold_dirs(path, "")]


def output_dir(settings: RepredictSettings) -> Path:
    run = Path(settings.run)
    if settings.out:
        return Path(settings.out)
    return run.with_name(f"{run.name}-{settings.rule_set or 'repredicted'}")


def repredict_fold(fold_dir: Path, out: Path, rule_set: str, device: torch.device, log) -> None:
    """The validation and test predictions of one fold folder's best.pt, written under `out/fold<K>/`."""
    from train.inference import load_model, predict_scans, write_predictions
    from train.loop import load_training_cohort

    trained = load_model(fold_dir, device)
    # the fold file sits beside the run, wherever the run folder has moved since training
    settings = dataclasses.replace(trained.settings, runs_dir=str(fold_dir.parent.parent.parent))
    if rule_set and settings.stage != "ts1":
        raise RepredictError(f"--rule-set {rule_set}: {fold_dir} is a {settings.stage.upper()} run, which stages "
                             "with its learned head; re-stage a TS1 run instead")
    cohort = load_training_cohort(settings, log)
    target = out / fold_dir.name
    target.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        part = getattr(cohort, split)
        if rule_set:
            part = dataclasses.replace(part, rule_set=rule_set)
        predictions = predict_scans(trained, part.reader, part.tumor_sides, part.rule_set, device,
                                    settings.inference_samples, settings.seed,
                                    scan_names=[f"{p}/{s}" for p, s in zip(part.patient_ids, part.scan_ids,
                                                                           strict=True)])
        write_predictions(target / f"predictions_{split}.csv", part, predictions, settings.fold, split,
                          settings.stage)
        log(f"{fold_dir.name} {split}: {len(part)} scans -> {target / f'predictions_{split}.csv'}")


def run_repredict(settings: RepredictSettings) -> int:
    """Predict every chosen fold again; returns the exit status (0)."""
    if settings.rule_set and settings.rule_set not in rule_set_names():
        raise RepredictError(f"--rule-set {settings.rule_set!r} is unknown; available: {', '.join(rule_set_names())}")
    folds = fold_dirs(Path(settings.run), settings.folds)
    out = output_dir(settings)
    if out.resolve() == Path(settings.run).resolve():
        raise RepredictError(f"--out {out} is the run itself; its stored predictions stay as trained: pick another")
    device = resolve_device(settings.device)
    for fold_dir in folds:
        repredict_fold(fold_dir, out, settings.rule_set, device, print)
    print(f"predictions of {len(folds)} fold(s) in {out}; evaluate them with: python -m evaluate report --run {out}")
    return 0
