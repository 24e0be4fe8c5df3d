"""Dataset configs: where a dataset lives, how its files look, and where its cache goes.

`--dataset` takes a config name from `configs/datasets/` or a path to a TOML file. The data root can be moved
without editing the shared config: the flag `--root`, else the environment variable `LNSTAGE_ROOT_<NAME>`
(name upper-cased, other characters as `_`, e.g. `LNSTAGE_ROOT_UKSH_1`), else the config's `root`.
The cache root likewise: `--cache-root`, else `LNSTAGE_CACHE_ROOT`, else the config (relative to the root).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from cache.settings import SettingsError, read_toml, values_from_mapping
from configs import CONFIG_DIR

DATASETS_DIR = CONFIG_DIR / "datasets"
# Tables of a dataset config that override a stage's settings for this dataset (e.g. `[preprocess]
# spacing_mm = 2.0` for the demo); each stage checks its table against its own settings dataclass.
STAGE_TABLES = ("phantom", "preprocess", "train", "evaluate")  # [phantom]: how the demo cohort is drawn


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: its files, conventions and label columns."""

    name: str = field(default="", metadata={"help": "dataset name (used in cache paths and reports)"})
    root: str = field(default="", metadata={"help": "dataset root folder; relative paths resolve against it"})
    manifest: str = field(default="manifest.csv", metadata={"help": "manifest CSV, relative to the root"})
    cache_root: str = field(default="cache", metadata={"help": "cache root folder, relative to the root"})
    atlas_bank: str = field(default="atlases", metadata={"help": "atlas bank folder, relative to the root"})
    label_column: Literal["cN", "pN"] = field(
        default="cN", metadata={"help": "target labels: clinical (cN) or pathological (pN) columns"}
    )
    rule_set: str = field(default="paper", metadata={"help": "N-stage rule set in configs/rule_sets/"})
    pet_nifti_is_suv: bool = field(
        default=True, metadata={"help": "a NIfTI/NRRD/MHA PET holds SUV already (DICOM PET is converted)"}
    )
    totalseg_version: Literal["auto", "v1", "v2"] = field(
        default="auto", metadata={"help": "TotalSegmentator label ids of multilabel files (auto: from header)"}
    )
    station_labels: bool = field(
        default=True,
        metadata={
            "help": "the manifest's station lists can be trusted; false: N-stage only (no TS1, station loss or "
            "station metric sees this dataset's scans; TS2/TS3 and N-stage metrics do)"
        },
    )

    def resolve(self, path: str | Path) -> Path:
        """A manifest or config path, relative ones against the dataset root."""
        path = Path(os.path.expanduser(str(path)))
        return path if path.is_absolute() else Path(self.root) / path

    @property
    def manifest_path(self) -> Path:
        return self.resolve(self.manifest)

    @property
    def atlas_bank_path(self) -> Path:
        return self.resolve(self.atlas_bank)

    @property
    def cache_dir(self) -> Path:
        """Folder of this dataset's cache files: `<cache_root>/<dataset>/`."""
        return self.resolve(self.cache_root) / self.name


def root_env_var(name: str) -> str:
    return "LNSTAGE_ROOT_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


def dataset_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in DATASETS_DIR.glob("*.toml")))


def config_file(dataset: str) -> Path:
    """The TOML file for `dataset`: a path to a file, or a name in `configs/datasets/`."""
    path = Path(dataset)
    if path.suffix == ".toml" or path.is_file():
        if not path.is_file():
            raise SettingsError(f"dataset config {path} not found")
        return path
    candidate = DATASETS_DIR / f"{dataset}.toml"
    if not candidate.is_file():
        raise SettingsError(
            f"unknown dataset {dataset!r}: no {candidate}; shipped configs: {', '.join(dataset_names())}, "
            "or pass a path to your own TOML file"
        )
    return candidate


def load_dataset(dataset: str, root: str | None = None, cache_root: str | None = None, **overrides) -> DatasetConfig:
    """Read a dataset config by name or path, then apply root overrides (flag > environment > file)."""
    path = config_file(dataset)
    data = read_toml(path)
    values = values_from_mapping(DatasetConfig, {k: v for k, v in data.items() if k not in STAGE_TABLES}, str(path))
    values.setdefault("name", path.stem)
    config = DatasetConfig(**{**values, **{k: v for k, v in overrides.items() if v is not None}})
    root = root or os.environ.get(root_env_var(config.name)) or config.root
    if not root:
        raise SettingsError(
            f"{path}: no data root; set 'root' in the file, the environment variable "
            f"{root_env_var(config.name)}, or pass --root"
        )
    root_path = Path(os.path.expanduser(root))
    if not root_path.is_absolute():
        root_path = Path.cwd() / root_path
    cache_root = cache_root or os.environ.get("LNSTAGE_CACHE_ROOT") or config.cache_root
    return replace(config, root=str(root_path), cache_root=str(cache_root))


def stage_overrides(dataset: str, stage: str) -> dict:
    """The `[stage]` table of a dataset config: that stage's setting values for this dataset."""
    assert stage in STAGE_TABLES
    return dict(read_toml(config_file(dataset)).get(stage, {}))
