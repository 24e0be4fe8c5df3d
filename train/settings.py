"""Training settings: one flat dataclass, defaults from the paper's §3.3 (docs/architecture.md#the-model-and-training).

Precedence: these defaults < `configs/train/<stage>.toml` < the dataset config's `[train]` table < `--config
FILE` < flags (`cache.cli` builds the command line from the fields).
"""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from cache.cli import Preset
from cache.dataset import stage_overrides
from cache.devices import Device
from cache.settings import read_toml, values_from_mapping
from configs import CONFIG_DIR
from train.batch_stream import threads_setting

STAGES = ("ts1", "ts2", "ts3")
PRESETS_DIR = CONFIG_DIR / "train"
# Settings that may differ between a run and its resume: where, how fast and how long it runs, not what each
# epoch computes.
RESUMABLE_CHANGES = ("resume", "overwrite", "stop_after_epoch", "max_epochs", "device", "num_workers", "reuse_heap",
                     "progress")


def _tuple(help_text: str, kind: type = int) -> dict:
    return {"help": help_text, "nargs": "+", "type": kind}


@dataclass(frozen=True)
class TrainSettings:
    """Everything a training run depends on; stored with every run and checkpoint."""

    stage: Literal["ts1", "ts2", "ts3"] = field(
        default="ts1",
        metadata={"args": ["stage"], "help": "ts1: station classifier; ts2: end-to-end N-stage; ts3: ts2 head only"},
    )
    fold: int = field(default=0, metadata={"help": "test fold 0..n_folds-1 of the stored fold file"})
    dataset: str = field(
        default="demo", metadata={"help": "dataset config or study name (configs/studies/), or a TOML path"}
    )
    root: str = field(default="", metadata={"help": "dataset root (empty: from the dataset config/environment)"})
    cache_root: str = field(default="", metadata={"help": "cache root (empty: from the dataset config/environment)"})
    runs_dir: str = field(default="runs", metadata={"help": "runs land in <runs_dir>/<dataset>/<run_name>/fold<K>/"})
    run_name: str = field(default="", metadata={"help": "run folder name (empty: the stage name)"})
    init_from: str = field(
        default="", metadata={"help": "TS2/TS3: the TS1 checkpoint to start from, or for TS2 a TS3 one (classifier "
                                      "and head) (empty: <runs>/<dataset>/ts1/fold<K>/best.pt)"}
    )
    resume: bool = field(default=False, metadata={"help": "continue the run from its last checkpoint"})
    overwrite: bool = field(default=False, metadata={"help": "start over in a run folder that holds checkpoints"})
    device: Device = field(default="auto", metadata={"help": "auto: CUDA when present"})
    seed: int = field(default=0, metadata={"help": "seed of every random draw (rank-offset under DDP)"})
    # folds
    n_folds: int = field(default=5, metadata={"help": "cross-validation folds (by patient)"})
    val_fraction: float = field(default=0.2, metadata={"help": "share of each training part carved for validation"})
    fold_seed: int = field(default=0, metadata={"help": "seed of the fold split (the fold file records it)"})
    # model
    channels: tuple[int, ...] = field(
        default=(8, 16, 32, 64, 128, 256), metadata=_tuple("output channels per conv block (six blocks for 64^3)")
    )
    dropout: tuple[float, ...] = field(
        default=(0.05, 0.1, 0.2, 0.2, 0.2, 0.2), metadata=_tuple("Dropout3d rate per conv block", float)
    )
    station_encoding: Literal["index", "embedding"] = field(
        default="index",
        metadata={"help": "station identity joined to the image features: the paper's scalar station index "
                          "(index / 16), or a learned embedding of embedding_dim values (benchmarks/README.md, "
                          "\"TS2/TS3 that learn\", compares them)"},
    )
    embedding_dim: int = field(default=8, metadata={"help": "size of the learned station embedding (embedding only)"})
    station_mask_channel: bool = field(default=False, metadata={"help": "add the binary station mask as a channel"})
    norm: Literal["instance", "batch"] = field(
        default="instance",
        metadata={"help": "normalisation in every conv block: instance (the paper's; absolute uptake is seen only "
                          "relative to the patch) or batch (keeps it)"},
    )
    head_hidden: int = field(
        default=64, metadata={"help": "TS2/TS3: width of the head's hidden linear layer (head_init = rule uses 54 "
                                      "units for rule set paper, 50 for tnm8)"}
    )
    head_init: Literal["rule", "random"] = field(
        default="rule",
        metadata={"help": "TS2/TS3: start the N-stage head at the rule-based stager on the station logits (rule) or "
                          "at PyTorch's random init (random); benchmarks/README.md, \"TS3 starts at the rule\", "
                          "compares them. A TS3 checkpoint given to TS2 brings its own head"},
    )
    start_margin_se: float = field(
        default=1.0,
        metadata={"help": "TS2/TS3 with head_init = rule: a trained epoch replaces the start as the best checkpoint "
                          "only if its validation N-stage balanced accuracy beats the start's by this many standard "
                          "errors (the one-standard-error rule: the best of many noisy scores on a few dozen "
                          "validation scans is optimistic); 0: any gain"},
    )
    # patches and augmentation
    patch_size_vox: int = field(default=64, metadata={"help": "edge of the cubic input patch, in voxels"})
    margin_vox: int = field(
        default=16, metadata={"help": "crop margin per side for augmentation; reads beyond repeat the crop border"}
    )
    ct_window_low_hu: float = field(default=-200.0, metadata={"help": "CT HU mapped to 0 (clipped below)"})
    ct_window_high_hu: float = field(default=400.0, metadata={"help": "CT HU mapped to 1 (clipped above)"})
    suv_window_high: float = field(default=4.0, metadata={"help": "SUV mapped to 1 (not clipped)"})
    train_patch_sampling: Literal["weight_map", "centroid"] = field(
        default="weight_map",
        metadata={"help": "training patch centres: drawn from the station weight map, or the fixed station "
                          "centroid (the paper's Table 5 ablation)"},
    )
    augment: bool = field(default=True, metadata={"help": "random affine + elastic + noise on training patches"})
    rotation_deg: float = field(default=15.0, metadata={"help": "max rotation about each axis, degrees"})
    scale_fraction: float = field(default=0.1, metadata={"help": "max relative scaling per axis"})
    shear_fraction: float = field(default=0.05, metadata={"help": "max shear coefficient"})
    elastic_vox: float = field(default=2.0, metadata={"help": "elastic displacement scale, voxels (0: off)"})
    elastic_grid: int = field(default=4, metadata={"help": "control points per axis of the elastic field"})
    noise_std: float = field(default=0.02, metadata={"help": "Gaussian noise std on the windowed [0, 1] channels"})
    # optimisation
    batch_size: int = field(default=64, metadata={"help": "patches (TS1) or scans (TS2/TS3) per step, all ranks"})
    samples_per_epoch: int = field(
        default=0, metadata={"help": "training samples per epoch (0: one per training sample, oversampled)"}
    )
    lr: float = field(default=5e-4, metadata={"help": "Adam learning rate"})
    head_lr: float = field(
        default=0.0, metadata={"help": "TS2/TS3: Adam learning rate of the N-stage head (0: lr)"}
    )
    weight_decay: float = field(default=1e-3, metadata={"help": "Adam weight decay"})
    max_epochs: int = field(default=150, metadata={"help": "most epochs"})
    val_metric: Literal["balanced_accuracy", "auc"] = field(
        default="balanced_accuracy",
        metadata={"help": "TS1: validation score that picks the best epoch, steps the learning rate and stops "
                          "early: station balanced accuracy at the 0.5 cutoff (the paper's) or station AUC (steadier "
                          "on a small validation part)"},
    )
    early_stop_patience: int = field(default=30, metadata={"help": "stop after this many epochs without improvement"})
    plateau_patience: int = field(default=10, metadata={"help": "ReduceLROnPlateau patience (epochs)"})
    head_logit_draws: int = field(
        default=0,
        metadata={"help": "TS3: compute the frozen classifier's station logits once, for this many fresh patch "
                          "draws (weight map, augmentation) per training scan, and train the head on them; 0: run "
                          "the classifier at every step"},
    )
    head_cross_fit: int = field(
        default=0,
        metadata={"help": "TS3: fit the head on station logits from TS1 models that did not train on each scan: TS1 "
                          "trained again on K parts of the fold's training patients, each left out once (K extra TS1 "
                          "runs; needs head_logit_draws); 0: the fold's TS1 on its own training scans, as the paper "
                          "(benchmarks/README.md, \"TS3 cross-fitted\")"},
    )
    min_steps: int = field(
        default=0,
        metadata={"help": "optimizer steps before an epoch may count as best, lower the learning rate or stop early "
                          "(a small cohort gives TS2/TS3 few steps per epoch; its N-stage score is noise before)"},
    )
    plateau_factor: float = field(default=0.5, metadata={"help": "ReduceLROnPlateau factor"})
    lambda_ce: float = field(default=0.1, metadata={"help": "TS2/TS3 weight of the N-stage cross-entropy"})
    lambda_mse: float = field(default=0.1, metadata={"help": "TS2/TS3 weight of the expected-stage MSE"})
    lambda_pseudo: float = field(default=0.02, metadata={"help": "TS2/TS3 weight of the group pseudo-loss"})
    lambda_bce: float = field(
        default=1.0, metadata={"help": "TS2/TS3 weight of the station BCE (a sum over each scan's stations)"}
    )
    balance_stations: bool = field(
        default=True,
        metadata={"help": "TS2/TS3: weight malignant and benign stations in the station BCE inversely to their "
                          "frequency in the batch, as the paper's Eq. 3 weighs pseudo-labels (without it ~6 % "
                          "malignant stations pull TS2 towards 'all benign')"},
    )
    amp: bool = field(default=True, metadata={"help": "mixed precision on CUDA (ignored on CPU)"})
    num_workers: int | Literal["auto"] = field(
        default="auto",
        metadata={"type": threads_setting, "metavar": "{auto,N}",
                  "help": "threads cutting the next batch's crops while the model trains (0: in the training loop; "
                          "auto: as many as keep the model fed, up to the cores)"},
    )
    reuse_heap: bool = field(
        default=True, metadata={"help": "keep freed memory for the next step instead of returning it to the system: "
                                        "1.6x faster CPU epochs for 2-3 GB more resident memory (glibc only)"}
    )
    inference_samples: int = field(
        default=0, metadata={"help": "validation/test: average over K weight-map patches besides the centroid"}
    )
    stop_after_epoch: int = field(
        default=0, metadata={"help": "exit after this epoch as a killed run would (tests, time-boxed jobs); 0: off"}
    )
    progress: bool = field(
        default=True, metadata={"help": "show progress: a bar on a terminal, a line per tenth of an epoch in a log"}
    )

    def __post_init__(self) -> None:
        if len(self.dropout) != len(self.channels):
            raise ValueError(f"dropout {self.dropout} needs one rate per conv block of channels {self.channels}")
        if self.patch_size_vox % 2 ** len(self.channels):
            raise ValueError(
                f"patch_size_vox={self.patch_size_vox} must be a multiple of 2**{len(self.channels)} "
                f"({len(self.channels)} max-pooling blocks); use 64 with six blocks or 32 with five"
            )
        if self.start_margin_se < 0:
            raise ValueError(f"start_margin_se={self.start_margin_se} must be 0 or more (standard errors)")
        if not 0 <= self.fold < self.n_folds:
            raise ValueError(f"fold={self.fold} is not in 0..{self.n_folds - 1}")
        threads_setting(self.num_workers)

    @property
    def run_dir(self) -> Path:
        dataset = Path(self.dataset).stem
        return Path(self.runs_dir) / dataset / (self.run_name or self.stage) / f"fold{self.fold}"


def changed_settings(saved: TrainSettings, now: TrainSettings) -> list[str]:
    """'name: saved vs now' of the settings that change what a run computes (RESUMABLE_CHANGES aside)."""
    return [f"{f.name}: checkpoint {getattr(saved, f.name)!r}, now {getattr(now, f.name)!r}"
            for f in dataclasses.fields(TrainSettings)
            if f.name not in RESUMABLE_CHANGES and getattr(saved, f.name) != getattr(now, f.name)]


def train_presets(given: Mapping[str, Any]) -> list[Preset]:
    """The stage preset `configs/train/<stage>.toml`, then the dataset config's `[train]` table, then its
    `[train.<stage>]` sub-table (lower first): a schedule that suits TS1 on a small cohort does not suit TS2/TS3."""
    stage, dataset = given.get("stage", TrainSettings.stage), given.get("dataset", TrainSettings.dataset)
    path = PRESETS_DIR / f"{stage}.toml"
    layers = [Preset(f"configs/train/{stage}.toml", TrainSettings, read_toml(path))] if path.is_file() else []
    table = stage_overrides(dataset, "train")
    shared = {key: value for key, value in table.items() if key not in STAGES}
    layers.append(Preset(f"dataset {dataset!r} [train]", TrainSettings, shared))
    if stage in table:
        layers.append(Preset(f"dataset {dataset!r} [train.{stage}]", TrainSettings, dict(table[stage])))
    return layers


def preset_values(stage: str, dataset: str) -> tuple[dict, str]:
    """The stage preset updated by the dataset config's `[train]` table, as one checked mapping and its source."""
    layers = train_presets({"stage": stage, "dataset": dataset})
    values: dict[str, Any] = {}
    for layer in layers:
        values.update(values_from_mapping(TrainSettings, dict(layer.values), layer.source))
    return values, " + ".join(layer.source for layer in layers)


def parse_train_settings(argv: list[str] | None = None) -> TrainSettings:
    """Flags over presets over defaults: `ts1 --fold 0 --dataset demo --lr 1e-3`."""
    from train.__main__ import COMMAND

    return COMMAND.parse(argv)[0]
