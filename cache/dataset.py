"""Dataset configs: where a dataset lives, how its files look, and where its cache goes.

`--dataset` takes a config name from `configs/datasets/` or a path to a TOML file. The data root can be moved
without editing the shared config: the flag `--root`, else the environment variable `LNSTAGE_ROOT_<NAME>`
(name upper-cased, other characters as `_`, e.g. `LNSTAGE_ROOT_UKSH_1`), else the config's `root`.
The cache root likewise: `--cache-root`, else `LNSTAGE_CACHE_ROOT`, else the config (relative to the root).

A study (`configs/studies/<name>.toml`, or a TOML path with a `members` list) pools several dataset configs under
one name, accepted wherever `--dataset` is: `python -m preprocess` preprocesses each member into its own cache,
`train` and `evaluate` pool them. Inside a study patient ids are namespaced by dataset (`UKSH-1/P001`), so two
members may use the same id. Members must agree on the label column, the rule set and the cache build settings
(one patch geometry for the pool). A study's `[train]` and `[evaluate]` settings are its first member's tables
updated by the study file's own. A dataset named on its own is a study of one member with its ids as they are,
so every stage has one code path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from cache.manifest import ManifestRow, read_manifest
from cache.settings import SettingsError, read_toml, values_from_mapping
from configs import CONFIG_DIR

DATASETS_DIR = CONFIG_DIR / "datasets"
STUDIES_DIR = CONFIG_DIR / "studies"
NAMESPACE_SEPARATOR = "/"  # study patient ids: "<dataset>/<patient_id>" (manifest ids never hold "/")
STUDY_KEYS = ("members", "train", "evaluate")  # what a study file may hold
# Tables of a dataset config that override a stage's settings for this dataset (e.g. `[preprocess]
# spacing_mm = 2.0` for the demo); each stage checks its table against its own settings dataclass.
# [phantom]: how the demo cohort is drawn; [import_tcia]: the clinical table's columns (preprocess.import_tcia).
STAGE_TABLES = ("phantom", "preprocess", "train", "evaluate", "import_tcia")


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
    """The `[stage]` table of a dataset config: that stage's setting values for this dataset.

    For a study: `[train]`/`[evaluate]` are its first member's table updated by the study's own, sub-tables such as
    `[train.ts2]` key by key; `[preprocess]` and `[phantom]` belong to each member (`python -m preprocess` runs per
    member), so asking a study is an error.
    """
    assert stage in STAGE_TABLES
    path = study_file(dataset)
    if path is None:
        return dict(read_toml(config_file(dataset)).get(stage, {}))
    data = read_study_file(path)
    if stage not in ("train", "evaluate"):
        raise SettingsError(f"{path}: a study has no [{stage}] table; each member's own applies, e.g. "
                            f"python -m preprocess --dataset {data['members'][0]}")
    merged = stage_overrides(data["members"][0], stage)
    for key, value in data.get(stage, {}).items():
        both_tables = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = {**merged[key], **value} if both_tables else value
    return merged


def study_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in STUDIES_DIR.glob("*.toml")))


def study_file(name: str) -> Path | None:
    """The study file `name` refers to (a name in `configs/studies/` or a TOML path with `members`), else None.

    A name that is both a study and a dataset is refused: which one a run pooled would depend on lookup order.
    """
    path = Path(name)
    if path.suffix == ".toml" or path.is_file():
        return path if path.is_file() and "members" in read_toml(path) else None
    candidate = STUDIES_DIR / f"{name}.toml"
    if not candidate.is_file():
        return None
    if (DATASETS_DIR / f"{name}.toml").is_file():
        raise SettingsError(f"{name!r} names both {candidate} and {DATASETS_DIR / f'{name}.toml'}; rename one")
    return candidate


def read_study_file(path: Path) -> dict:
    """A study file's contents, checked: a non-empty list of distinct members, known keys only."""
    data = read_toml(path)
    unknown = sorted(set(data) - set(STUDY_KEYS))
    if unknown:
        raise SettingsError(f"{path}: unknown key(s) {', '.join(unknown)}; a study holds {', '.join(STUDY_KEYS)}")
    members = data.get("members")
    if not isinstance(members, list) or not members or not all(isinstance(m, str) for m in members):
        raise SettingsError(f"{path}: 'members' must be a non-empty list of dataset config names or TOML paths")
    if len({Path(m).stem for m in members}) != len(members):
        raise SettingsError(f"{path}: 'members' lists a dataset twice: {members}")
    return data


@dataclass(frozen=True)
class Study:
    """Datasets trained and evaluated as one pool; a dataset named on its own is a study of one member whose
    patient ids are not namespaced (`namespaced` False)."""

    name: str
    members: tuple[DatasetConfig, ...]
    namespaced: bool

    @property
    def label_column(self) -> str:
        return self.members[0].label_column

    @property
    def rule_set(self) -> str:
        return self.members[0].rule_set

    def member(self, name: str) -> DatasetConfig:
        return next(m for m in self.members if m.name == name)

    def patient_id(self, member: DatasetConfig, patient_id: str) -> str:
        """The pool's id of a member's patient: `<dataset>/<id>` in a study, the id itself for one dataset."""
        return f"{member.name}{NAMESPACE_SEPARATOR}{patient_id}" if self.namespaced else patient_id


@dataclass(frozen=True)
class StudyRow:
    """One manifest row of a study member, with the patient's id in the pool (`patient_id`; the row keeps the
    member's own id, which names the cache file)."""

    member: DatasetConfig
    row: ManifestRow
    patient_id: str


def load_study(name: str, root: str | None = None, cache_root: str | None = None) -> Study:
    """A study by name or path, or a single dataset as a study of one; members checked to pool."""
    path = study_file(name)
    if path is None:
        return Study(config_file(name).stem, (load_dataset(name, root, cache_root),), namespaced=False)
    data = read_study_file(path)
    if root:
        raise SettingsError(f"--root names one dataset's root, study {path.stem!r} has {len(data['members'])} "
                            "members; set each member's root in its config or its LNSTAGE_ROOT_<NAME> variable")
    members = tuple(load_dataset(m, None, cache_root) for m in data["members"])
    for key in ("label_column", "rule_set"):
        values = {m.name: getattr(m, key) for m in members}
        if len(set(values.values())) > 1:
            raise SettingsError(f"study {path}: its members differ in {key} ({values}); one fold file and one "
                                f"report need one {key}: set it alike in the members' configs")
    return Study(path.stem, members, namespaced=True)


def study_rows(study: Study, log: Callable[[str], None] = print) -> list[StudyRow]:
    """Every usable manifest row of every member (rows with problems are logged and left out, as the trainer
    always did), with pool patient ids."""
    rows = []
    for member in study.members:
        manifest = read_manifest(member.manifest_path, member.root, member.rule_set, check_files=False)
        if manifest.issues:
            log(f"warning: {len(manifest.issues)} manifest row problem(s) in {member.name}; those rows are left out:")
            for issue in manifest.issues:
                log(f"  {issue}")
        rows += [StudyRow(member, r, study.patient_id(member, r.patient_id)) for r in manifest.rows]
    return rows
