"""Cross-validation folds by patient, made once per dataset and label column and stored as patient ids.

Every run of every stage reads the same file (`<runs_dir>/<dataset>/folds_<label_column>.json`), so TS1, TS2,
TS3 and the baselines of `evaluate` see the same test patients. A manifest whose patients or labels no longer
match the file is refused: silently re-splitting would mix test patients into training.

Stratum of a patient: (N-stage, number of positive stations) of the label column, the highest over the
patient's scans; "N?" when the N-stage is unknown. Rare strata are merged by this rule (MERGE_RULE):
  1. within one N-stage, counts are binned from the highest down: a bin closes once it holds >= n_folds
     patients ("N2_k2+" = N2 with 2 or more positive stations); a remainder too small joins the last bin;
  2. an N-stage with fewer than n_folds patients in all becomes one stratum "N<n>"; such strata are pooled
     into "rare", and a "rare" stratum still smaller than n_folds joins the largest stratum.
Folds: StratifiedKFold(n_folds, shuffle, fold_seed) over patients; validation: a stratified share
`val_fraction` of each training part (StratifiedShuffleSplit, same seed).

A study (several datasets, `cache.dataset.Study`) is split member by member, each by the rule above on its own
patients, and fold k of the study is the union of the members' fold k (ids namespaced `<dataset>/<id>`). So a
member's folds do not depend on the other members: appending a member adds its patients to every fold and moves
nobody, and a member's patients sit in the same folds as when it is split alone. The study's file
(`<runs_dir>/<study>/folds_<label_column>.json`) holds one section per member, each checked against that
member's manifest as a single dataset's file is; a member the file lacks is split and added, a member the study
no longer lists is refused.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit

from cache.atomic import write_text_atomic
from cache.dataset import NAMESPACE_SEPARATOR, Study, StudyRow
from cache.manifest import ManifestRow

MERGE_RULE = (
    "per N-stage, positive-station counts binned from the highest down until a bin holds >= n_folds patients "
    "(remainder joins the last bin); N-stages with < n_folds patients pooled as 'rare'; a 'rare' stratum "
    "< n_folds joins the largest stratum"
)


class FoldError(ValueError):
    """A fold file that does not match the manifest or the settings."""


@dataclass(frozen=True)
class Fold:
    """Patient ids of one fold: test (this fold), validation and training (the rest, split)."""

    index: int
    train: tuple[str, ...]
    val: tuple[str, ...]
    test: tuple[str, ...]


def patient_labels(rows: list[ManifestRow], label_column: str) -> dict[str, tuple[int, int]]:
    """patient_id -> (N-stage or -1 when unknown, number of positive stations), highest over their scans."""
    labels: dict[str, tuple[int, int]] = {}
    for row in rows:
        n = row.n_stage(label_column)
        positive = int((row.station_status(label_column) == 1).sum())
        current = labels.get(row.patient_id, (-1, 0))
        labels[row.patient_id] = (max(current[0], -1 if n is None else n), max(current[1], positive))
    return labels


def _bin_counts(patients: list[tuple[str, int]], n_folds: int, stage: str) -> dict[str, str]:
    """Rule 1: patient -> stratum name, positive counts binned from the highest down ("N2_k2+", "N2_k0-1")."""
    by_count = defaultdict(list)
    for pid, count in patients:
        by_count[count].append(pid)
    bins: list[list[int]] = []  # counts per bin, highest bin first
    current: list[int] = []
    for count in sorted(by_count, reverse=True):
        current.append(count)
        if sum(len(by_count[c]) for c in current) >= n_folds:
            bins.append(current)
            current = []
    if current:
        bins[-1] += current  # the caller guarantees the N-stage has >= n_folds patients, so bins is not empty
    result = {}
    for i, counts in enumerate(bins):
        low, high = min(counts), max(counts)
        name = f"{stage}_k{low}+" if i == 0 else (f"{stage}_k{low}" if low == high else f"{stage}_k{low}-{high}")
        result.update({pid: name for c in counts for pid in by_count[c]})
    return result


def strata(labels: dict[str, tuple[int, int]], n_folds: int) -> dict[str, str]:
    """patient_id -> stratum name, rare strata merged by MERGE_RULE."""
    by_stage = defaultdict(list)
    for pid, (n, count) in labels.items():
        by_stage["N?" if n < 0 else f"N{n}"].append((pid, count))
    result: dict[str, str] = {}
    rare: list[str] = []
    for stage, patients in sorted(by_stage.items()):
        if len(patients) < n_folds:
            rare += [pid for pid, _ in patients]
        elif stage == "N?":
            result.update({pid: stage for pid, _ in patients})
        else:
            result.update(_bin_counts(patients, n_folds, stage))
    if rare:
        if len(rare) >= n_folds or not result:
            result.update({pid: "rare" for pid in rare})
        else:
            largest = Counter(result.values()).most_common(1)[0][0]
            result.update({pid: largest for pid in rare})
    return result


def make_folds(
    labels: dict[str, tuple[int, int]], n_folds: int, val_fraction: float, seed: int
) -> tuple[list[Fold], dict[str, str]]:
    """Stratified folds over patients (sorted ids, so the split depends only on ids, labels and seed)."""
    patients = sorted(labels)
    if len(patients) < n_folds:
        raise FoldError(f"{len(patients)} patient(s) cannot make {n_folds} folds; lower n_folds")
    stratum = strata(labels, n_folds)
    y = np.array([stratum[p] for p in patients])
    folds = []
    with warnings.catch_warnings():
        # small strata inside one training part: StratifiedKFold/ShuffleSplit warn and still split by patient
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
        for k, (train_idx, test_idx) in enumerate(splitter.split(patients, y)):
            val_idx = _carve_validation(train_idx, y, val_fraction, seed)
            train_rest = np.setdiff1d(train_idx, val_idx)
            folds.append(Fold(k, _ids(patients, train_rest), _ids(patients, val_idx), _ids(patients, test_idx)))
    return folds, stratum


def _carve_validation(train_idx: np.ndarray, y: np.ndarray, val_fraction: float, seed: int) -> np.ndarray:
    n_val = max(1, int(round(val_fraction * len(train_idx))))
    try:
        split = StratifiedShuffleSplit(n_splits=1, test_size=n_val, random_state=seed)
        _, val = next(split.split(train_idx, y[train_idx]))
    except ValueError:  # a stratum with a single patient in this part: split without stratification
        val = np.random.default_rng(seed).permutation(len(train_idx))[:n_val]
    return np.sort(train_idx[val])


def _ids(patients: list[str], index: np.ndarray) -> tuple[str, ...]:
    return tuple(sorted(patients[i] for i in index))


def fold_file_path(runs_dir: str | Path, dataset: str, label_column: str) -> Path:
    return Path(runs_dir) / Path(dataset).stem / f"folds_{label_column}.json"


def fold_section(folds: list[Fold], stratum: dict[str, str], labels: dict[str, tuple[int, int]],
                 label_column: str, val_fraction: float, seed: int) -> dict:
    """The folds and each patient's labels and stratum (to detect manifest changes), as the file stores them."""
    return {
        "label_column": label_column, "n_folds": len(folds), "val_fraction": val_fraction, "fold_seed": seed,
        "merge_rule": MERGE_RULE,
        "patients": {p: {"n_stage": labels[p][0], "n_positive": labels[p][1], "stratum": stratum[p]}
                     for p in sorted(labels)},
        "folds": [{"index": f.index, "train": list(f.train), "val": list(f.val), "test": list(f.test)} for f in folds],
    }


def write_fold_file(path: Path, folds: list[Fold], stratum: dict[str, str], labels: dict[str, tuple[int, int]],
                    label_column: str, val_fraction: float, seed: int) -> None:
    """A single dataset's fold file (`fold_section`), written atomically."""
    write_text_atomic(path, json.dumps(fold_section(folds, stratum, labels, label_column, val_fraction, seed),
                                       indent=1))


def section_folds(data: dict) -> list[Fold]:
    return [Fold(f["index"], tuple(f["train"]), tuple(f["val"]), tuple(f["test"])) for f in data["folds"]]


def read_fold_file(path: Path) -> tuple[list[Fold], dict]:
    """The folds of a fold file (a study's: merged over its members, ids namespaced) and its raw contents."""
    data = json.loads(Path(path).read_text())
    if "members" not in data:
        return section_folds(data), data
    return merge_members({name: section_folds(section) for name, section in data["members"].items()}), data


def merge_members(folds: dict[str, list[Fold]]) -> list[Fold]:
    """Fold k of a study: the union of its members' fold k, ids namespaced `<dataset>/<id>`."""
    def ids(part: str, k: int) -> tuple[str, ...]:
        return tuple(sorted(f"{name}{NAMESPACE_SEPARATOR}{p}" for name, member in folds.items()
                            for p in getattr(member[k], part)))

    n_folds = {len(member) for member in folds.values()}
    assert len(n_folds) == 1, n_folds  # every section is checked against one n_folds first
    return [Fold(k, ids("train", k), ids("val", k), ids("test", k)) for k in range(n_folds.pop())]


def check_fold_file(path: Path | str, data: dict, labels: dict[str, tuple[int, int]], label_column: str,
                    n_folds: int, val_fraction: float, seed: int) -> None:
    """Refuse a fold file made from other patients, labels or split settings, naming what differs."""
    fix = (f"restore the manifest, or delete {path} to split anew (runs on the old split are then no longer "
           "comparable, rerun every stage)")
    wanted = {"label_column": label_column, "n_folds": n_folds, "val_fraction": val_fraction, "fold_seed": seed}
    for key, value in wanted.items():
        if data[key] != value:
            raise FoldError(f"{path}: made with {key}={data[key]!r}, the settings say {value!r}; "
                            f"use {key}={data[key]!r}, or {fix}")
    stored = {p: (v["n_stage"], v["n_positive"]) for p, v in data["patients"].items()}
    added, removed = sorted(set(labels) - set(stored)), sorted(set(stored) - set(labels))
    changed = sorted(p for p in set(labels) & set(stored) if labels[p] != stored[p])
    if added or removed or changed:
        parts = [f"{name}: {', '.join(ids[:10])}{' ...' if len(ids) > 10 else ''}"
                 for name, ids in (("new patients", added), ("missing patients", removed),
                                   ("changed labels (N-stage, positive stations)", changed)) if ids]
        raise FoldError(f"{path} no longer matches the manifest ({'; '.join(parts)}); {fix}")


def load_or_make_folds(path: Path, rows: list[ManifestRow], label_column: str, n_folds: int,
                       val_fraction: float, seed: int) -> list[Fold]:
    """The stored folds, checked against the manifest rows; made and written first when the file is absent."""
    labels = patient_labels(rows, label_column)
    if path.is_file():
        folds, data = read_fold_file(path)
        if "members" in data:
            raise FoldError(f"{path} holds a study's folds (members {', '.join(data['members'])}), not one "
                            "dataset's; pass the study's name, or another --runs-dir")
        check_fold_file(path, data, labels, label_column, n_folds, val_fraction, seed)
        return folds
    folds, stratum = make_folds(labels, n_folds, val_fraction, seed)
    write_fold_file(path, folds, stratum, labels, label_column, val_fraction, seed)
    return folds


def load_or_make_study_folds(path: Path, study: Study, rows: list[StudyRow], n_folds: int, val_fraction: float,
                             seed: int, log: Callable[[str], None] = print) -> list[Fold]:
    """A study's folds (pool ids), each member split on its own; a single dataset's as `load_or_make_folds`."""
    label_column = study.label_column
    if not study.namespaced:
        return load_or_make_folds(path, [r.row for r in rows], label_column, n_folds, val_fraction, seed)
    data = json.loads(path.read_text()) if path.is_file() else {"study": study.name, "members": {}}
    if "members" not in data:
        raise FoldError(f"{path} holds one dataset's folds, not study {study.name!r}'s; delete it or use another "
                        "--runs-dir")
    names = [m.name for m in study.members]
    dropped = sorted(set(data["members"]) - set(names))
    if dropped:
        raise FoldError(f"{path}: member(s) {', '.join(dropped)} of the stored folds are no longer in study "
                        f"{study.name!r}; runs on these folds trained on them: restore the study's members, or "
                        f"delete {path} to split anew (then rerun every stage)")
    added = []
    for name in names:
        labels = patient_labels([r.row for r in rows if r.member.name == name], label_column)
        if name in data["members"]:
            check_fold_file(f"{path}, member {name}", data["members"][name], labels, label_column, n_folds,
                            val_fraction, seed)
            continue
        if not labels:
            raise FoldError(f"study {study.name!r}: member {name} has no usable manifest row; check its manifest "
                            f"with: python -m preprocess --dataset {name} --check")
        try:
            folds, stratum = make_folds(labels, n_folds, val_fraction, seed)
        except FoldError as error:
            raise FoldError(f"study {study.name!r}, member {name}: {error}") from None
        data["members"][name] = fold_section(folds, stratum, labels, label_column, val_fraction, seed)
        added.append(name)
    if added:
        log(f"{path}: member(s) {', '.join(added)} split into folds and added (other members' folds unchanged)")
        write_text_atomic(path, json.dumps(data, indent=1))
    return merge_members({name: section_folds(data["members"][name]) for name in names})
