"""The paper's study as a list of runs: Table 4 (TS1, TS2, TS3), Table 5 (TS1 with weight-map vs fixed centroid
patches) and Table 6 (TS2 with and without the pseudo-label loss), each row a training run over the same folds.

A row's training settings are the stage preset of the trainer (`train.settings.preset_values`: defaults, the
stage TOML, the dataset's `[train]` table), then the study's schedule overrides, then the row's own changes. Two
rows that differ only in the ablated factor therefore share every other setting (seed, folds, data, schedule).
A run is keyed by a hash of what it computes: its settings (without fold, paths and run-time switches), the key
of the run it starts from (TS3 starts from the TS1 checkpoint of the same fold, TS2 from TS3's), the cache's build
settings and the fold file. A run with the same key is reused, never retrained.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from cache.devices import Device
from cache.settings import settings_dict
from train.settings import TrainSettings, preset_values

# TrainSettings fields that say where or how fast a run goes, not what it computes: left out of the run key.
NOT_IN_KEY = ("fold", "dataset", "root", "cache_root", "runs_dir", "run_name", "init_from", "resume", "overwrite",
              "device", "num_workers", "reuse_heap", "stop_after_epoch", "progress")
# Fields only some stages read: in the key of those stages' runs only, so a field added for TS2/TS3 leaves the TS1
# runs already trained valid.
STAGE_ONLY = {"head_init": ("ts2", "ts3"), "head_hidden": ("ts2", "ts3"), "start_margin_se": ("ts2", "ts3"),
              "head_cross_fit": ("ts3",)}


@dataclass(frozen=True)
class ExperimentSettings:
    """`python -m evaluate experiments`: every row of the paper's Tables 4-6 trained and evaluated on one fold set."""

    dataset: str = field(
        default="demo", metadata={"help": "dataset config or study name (configs/studies/), or a TOML path"}
    )
    folds: str = field(default="", metadata={"help": "folds to train and evaluate, e.g. '0-4' or '0,2' (empty: all)"})
    out: str = field(default="", metadata={"help": "report folder (empty: <runs_dir>/<dataset>/experiments)"})
    runs_dir: str = field(default="runs", metadata={"help": "runs land in <runs_dir>/<dataset>/<stage>-<key>/"})
    root: str = field(default="", metadata={"help": "dataset root (empty: from the dataset config/environment)"})
    cache_root: str = field(default="", metadata={"help": "cache root (empty: from the dataset config/environment)"})
    force: bool = field(default=False, metadata={"help": "retrain every run, even those already complete"})
    max_epochs: int = field(default=0, metadata={"help": "most epochs of every run (0: the stage preset's)"})
    early_stop_patience: int = field(default=0, metadata={"help": "early-stop patience of every run (0: preset's)"})
    seed: int = field(default=0, metadata={"help": "seed of every training run (the same for all rows)"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})
    num_workers: int = field(default=-1, metadata={"help": "DataLoader workers of the runs (-1: the preset's)"})
    lesion_source: Literal["auto", "cache", "builtin", "both"] = field(
        default="auto", metadata={"help": "lesion masks of the overlap baseline (see python -m evaluate --help)"}
    )
    n_permutations: int = field(default=10_000, metadata={"help": "permutation test draws (when not exact)"})
    n_bootstrap: int = field(
        default=1000, metadata={"help": "patient-bootstrap resamples per pooled metric's 95 % interval (0: none)"}
    )
    stop_after_runs: int = field(
        default=0, metadata={"help": "stop after training this many fold runs, as a killed study would (tests); 0: off"}
    )
    progress: bool = field(
        default=True, metadata={"help": "show progress: a bar on a terminal, a line per tenth of an epoch in a log"}
    )

    @property
    def output_dir(self) -> Path:
        """Where the report goes: `out`, else <runs_dir>/<dataset>/experiments."""
        return Path(self.out) if self.out else Path(self.runs_dir) / Path(self.dataset).stem / "experiments"


@dataclass(frozen=True)
class StudyRow:
    """One trained row: its name in the tables, its stage, the settings it changes, the row it starts from."""

    name: str
    stage: Literal["ts1", "ts2", "ts3"]
    changes: tuple[tuple[str, object], ...] = ()
    parent: str | None = None
    description: str = ""


ROWS = (  # parents first
    StudyRow("TS1", "ts1", description="station classifier, weight-map patch sampling, rule-based N-stage"),
    StudyRow("TS1, centroid patch", "ts1", (("train_patch_sampling", "centroid"),),
             description="TS1 trained on a fixed patch at the station centroid (Table 5 ablation)"),
    StudyRow("TS3", "ts3", parent="TS1", description="TS2 head on the frozen TS1 classifier"),
    # TS2 starts from TS3: the TS1 classifier with TS3's head (the rule, refined on the frozen logits), so the
    # study's few joint steps start from a head that already stages (benchmarks/README.md)
    StudyRow("TS2", "ts2", parent="TS3", description="end-to-end N-stage from TS3 (TS1 classifier, refined head), "
                                                     "pseudo-labels on"),
    # both TS2 rows start from the one TS3: its pseudo-label term acts on station logits only, which TS3 freezes
    # (TS3 with and without it gave bit-identical checkpoints on the demo study's five folds)
    StudyRow("TS2, no pseudo-labels", "ts2", (("lambda_pseudo", 0.0),), parent="TS3",
             description="TS2 with the pseudo-label loss weight set to 0 (Table 6 ablation)"),
)
# Ablations: (table title, factor, [(level shown in the table, row name)]), levels in the paper's order.
ABLATIONS = (
    ("Table 5: weight-map patch sampling (TS1)", "Patch sampling", (("No", "TS1, centroid patch"), ("Yes", "TS1"))),
    ("Table 6: pseudo-label loss (TS2)", "Pseudo-labeling", (("No", "TS2, no pseudo-labels"), ("Yes", "TS2"))),
)


def row(name: str) -> StudyRow:
    return next(r for r in ROWS if r.name == name)


@dataclass(frozen=True)
class PlannedRun:
    """A row's settings for every fold but the fold itself, its key and its run folder."""

    row: StudyRow
    settings: TrainSettings  # fold 0; `for_fold` gives the others
    key: str
    parent: "PlannedRun | None"

    @property
    def run_dir(self) -> Path:
        return self.settings.run_dir.parent

    def for_fold(self, fold: int, resume: bool = False, overwrite: bool = False) -> TrainSettings:
        init_from = "" if self.parent is None else str(self.parent.run_dir / f"fold{fold}" / "best.pt")
        return dataclasses.replace(self.settings, fold=fold, init_from=init_from, resume=resume, overwrite=overwrite)


@dataclass(frozen=True)
class FoldRun:
    """One row's run on one fold: whether the study found it complete (reused) or trained it, and its training
    time (the trainer's epoch seconds, summed over resumes)."""

    row: str
    fold: int
    fold_dir: Path
    reused: bool
    train_seconds: float
    epochs: int


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_key(settings: TrainSettings, parent_key: str, data_key: str) -> str:
    """Hash of what a run computes: settings (NOT_IN_KEY, and STAGE_ONLY of other stages, left out), the parent
    run's key, the data's key."""
    values = {k: v for k, v in settings_dict(settings)["TrainSettings"].items()
              if k not in NOT_IN_KEY and settings.stage in STAGE_ONLY.get(k, (settings.stage,))}
    return _digest({"settings": values, "parent": parent_key, "data": data_key})


def data_key(cache_settings: dict, fold_file: Path) -> str:
    """Key of the data every run reads: the cache's expected build settings and the stored fold file."""
    return _digest({"cache": cache_settings, "folds": json.loads(Path(fold_file).read_text())})


def schedule_overrides(study: ExperimentSettings) -> dict[str, object]:
    """The study's flags that apply to every row."""
    values: dict[str, object] = {"dataset": study.dataset, "root": study.root, "cache_root": study.cache_root,
                                 "runs_dir": study.runs_dir, "seed": study.seed, "device": study.device,
                                 "progress": study.progress}
    if study.max_epochs:
        values["max_epochs"] = study.max_epochs
    if study.early_stop_patience:
        values["early_stop_patience"] = study.early_stop_patience
    if study.num_workers >= 0:
        values["num_workers"] = study.num_workers
    return values


def plan_runs(study: ExperimentSettings, data: str) -> dict[str, PlannedRun]:
    """Row name -> planned run, parents first; run folders are `<stage>-<key>` under the dataset's runs."""
    planned: dict[str, PlannedRun] = {}
    for r in ROWS:
        preset, _ = preset_values(r.stage, study.dataset)
        values = {**preset, **schedule_overrides(study), **dict(r.changes), "stage": r.stage}
        settings = TrainSettings(**values)
        parent = planned[r.parent] if r.parent else None
        key = run_key(settings, parent.key if parent else "", data)
        planned[r.name] = PlannedRun(r, dataclasses.replace(settings, run_name=f"{r.stage}-{key}"), key, parent)
    return planned


def differing_settings(a: TrainSettings, b: TrainSettings) -> dict[str, tuple[object, object]]:
    """Settings (NOT_IN_KEY aside) whose values differ between two runs: the ablated factor, nothing else."""
    da, db = settings_dict(a)["TrainSettings"], settings_dict(b)["TrainSettings"]
    return {k: (da[k], db[k]) for k in da if k not in NOT_IN_KEY and da[k] != db[k]}
