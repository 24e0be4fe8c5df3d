"""The domain model every stage shares: the 17 lymph node stations, the N-stage rule sets and the one stager
(`stage_scans` over a matrix of station calls; `n_stage` for one scan's station names calls it).

The catalogue and the rule sets are data in `configs/` (`stations.toml`, `rule_sets/*.toml`); this is the one
module that reads and applies them. Stations are named as in the IASLC map ("4R", "7"); per-station arrays
(cache labels, model outputs) are in catalogue order, which is label-code order (index = code - 1).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from cache.settings import read_toml
from configs import CONFIG_DIR

SIDES = ("R", "L")
N_GROUPS = 3
STATION_CUTOFF = 0.5  # a station is called malignant at probability >= this (the paper's cutoff)
UNSTAGEABLE = -1  # the N-stage of a scan whose unknown tumour side decides it: reported, never dropped


class StationError(ValueError):
    """A station name, tumour side, N-stage or rule set that the catalogue does not know."""


class UnknownTumorSideError(StationError):
    """The N-stage depends on the tumour side, and the side is unknown."""


@dataclass(frozen=True)
class Station:
    code: int
    name: str
    zone: str
    description: str

    @property
    def index(self) -> int:
        """Position in every per-station array."""
        return self.code - 1


@dataclass(frozen=True)
class RuleSet:
    """Station groups 1-3 per tumour side; the N-stage is the highest group with a positive station."""

    name: str
    description: str
    groups: dict[str, tuple[frozenset[str], ...]]


@functools.cache
def _catalogue() -> tuple[tuple[Station, ...], dict[str, str]]:
    data = read_toml(CONFIG_DIR / "stations.toml")
    stations = tuple(Station(**entry) for entry in data["station"])
    assert [s.code for s in stations] == list(range(1, len(stations) + 1)), "codes must be 1..17 in order"
    return stations, dict(data["sub_labels"])


def stations() -> tuple[Station, ...]:
    """The 17 stations in catalogue (= label code) order."""
    return _catalogue()[0]


def station_names() -> tuple[str, ...]:
    return tuple(s.name for s in stations())


@functools.cache
def _stations_by_name() -> dict[str, Station]:
    return {s.name: s for s in stations()}


def station(name: str) -> Station:
    """The station called `name` ("4R"); raises StationError naming the unknown value."""
    found = _stations_by_name().get(name)
    if found is None:
        raise StationError(f"unknown station {name!r}; known stations: {', '.join(station_names())}")
    return found


def station_by_code(code: int) -> Station:
    if not 1 <= code <= len(stations()):
        raise StationError(f"unknown station code {code!r}; codes are 1..{len(stations())}")
    return stations()[code - 1]


def sub_label_parents() -> dict[str, str]:
    """Atlas sub-label -> parent station ("7L" -> "7"), merged when an atlas is imported."""
    return dict(_catalogue()[1])


def parse_station_list(text: str) -> tuple[str, ...]:
    """Parse a manifest station list such as "4R;7" (empty -> ()); every name is checked."""
    names = tuple(part.strip() for part in text.replace(",", ";").split(";") if part.strip())
    for name in names:
        station(name)
    return names


def rule_set_names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in (CONFIG_DIR / "rule_sets").glob("*.toml")))


@functools.cache
def load_rule_set(name: str = "paper") -> RuleSet:
    """The rule set `name` from `configs/rule_sets/<name>.toml`, checked against the catalogue."""
    path = CONFIG_DIR / "rule_sets" / f"{name}.toml"
    if not path.is_file():
        raise StationError(f"unknown rule set {name!r}; available: {', '.join(rule_set_names())}")
    data = read_toml(path)
    groups = {}
    for side in SIDES:
        table = data["side"][side]
        groups[side] = tuple(frozenset(table[f"group_{g}"]) for g in range(1, N_GROUPS + 1))
        for group in groups[side]:
            for name_ in group:
                station(name_)
    return RuleSet(name=name, description=data.get("description", ""), groups=groups)


def _check_side(tumor_side: str | None) -> None:
    if tumor_side is not None and tumor_side not in SIDES:
        raise StationError(f"tumour side must be 'R' or 'L' (or unknown), got {tumor_side!r}")


def station_calls(probability: np.ndarray, cutoff: float = STATION_CUTOFF) -> np.ndarray:
    """int8 station calls (1 malignant, 0 benign) from probabilities of any shape; NaN (a station absent from the
    scan) is benign."""
    probability = np.asarray(probability, dtype=np.float64)
    return np.where(np.isnan(probability), 0, probability >= cutoff).astype(np.int8)


def _side_stages(calls: np.ndarray, rule_set: str) -> np.ndarray:
    """(scans, 2) int64: the N-stage of each scan for each side of SIDES; see `stages_by_side`."""
    calls = np.asarray(calls)
    if calls.ndim != 2 or calls.shape[1] != len(stations()):
        raise StationError(f"expected (scans, {len(stations())}) station calls, got shape {calls.shape}")
    hits = ((calls == 1)[:, None, None, :] & _group_masks(rule_set)).any(axis=3)  # (scans, side, group)
    return (hits * np.arange(1, N_GROUPS + 1)).max(axis=2, initial=0).astype(np.int64)


def stages_by_side(calls: np.ndarray, rule_set: str = "paper") -> dict[str, np.ndarray]:
    """int64 N-stage per scan for each tumour side, from a (scans, 17) matrix of station calls: 1 is malignant,
    anything else (0 benign, -1 unknown or absent) is not. The stage is the highest group with a malignant station."""
    stages = _side_stages(calls, rule_set)
    return {side: stages[:, k] for k, side in enumerate(SIDES)}


def stage_scans(calls: np.ndarray, tumor_sides: Sequence[str | None], rule_set: str = "paper") -> np.ndarray:
    """int64 N-stage per scan from a (scans, 17) matrix of station calls and each scan's tumour side (None:
    unknown); UNSTAGEABLE where the side is unknown and the two sides give different stages."""
    stages = _side_stages(calls, rule_set)
    if len(tumor_sides) != len(stages):
        raise StationError(f"{len(tumor_sides)} tumour sides for {len(stages)} scans of station calls")
    for side in set(tumor_sides):
        _check_side(side)
    side_index = np.array([-1 if side is None else SIDES.index(side) for side in tumor_sides], dtype=np.int64)
    agreed = np.where(stages[:, 0] == stages[:, 1], stages[:, 0], UNSTAGEABLE)
    return np.where(side_index >= 0, stages[np.arange(len(stages)), side_index.clip(0)], agreed)


def n_stage(positive_stations: Iterable[str], tumor_side: str | None, rule_set: str = "paper") -> int:
    """N-stage (0-3) of one scan from its positive stations (by name) and the tumour side ("R" or "L").

    With an unknown side (None) the stage is returned only when both sides give the same answer (e.g. no
    positive station, or only station 7); otherwise UnknownTumorSideError is raised so the caller can report
    the patient separately instead of dropping it.
    """
    positive = sorted(set(positive_stations))
    calls = status_vector(positive)[None]
    _check_side(tumor_side)
    stage = int(stage_scans(calls, [tumor_side], rule_set)[0])
    if stage == UNSTAGEABLE:
        by_side = {side: int(v[0]) for side, v in stages_by_side(calls, rule_set).items()}
        raise UnknownTumorSideError(
            f"tumour side unknown and positive stations {positive} give N{by_side['R']} for side R "
            f"but N{by_side['L']} for side L under rule set {rule_set!r}"
        )
    return stage


def check_n_stage(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n <= 3:
        raise StationError(f"N-stage must be an integer 0-3, got {n!r}")
    return int(n)


def pseudo_labels(n_stage: int) -> tuple[int | None, int | None, int | None]:
    """The three station-group targets of the paper's Table 3 for a known N-stage (None = unknown).

    N0 -> (0, 0, 0); N1 -> (1, 0, 0); N2 -> (None, 1, 0); N3 -> (None, None, 1), in group order 1, 2, 3.
    """
    n = check_n_stage(n_stage)
    if n == 0:
        return (0, 0, 0)
    return tuple(None if g < n else (1 if g == n else 0) for g in range(1, N_GROUPS + 1))


def group_mask(tumor_side: str, rule_set: str = "paper") -> np.ndarray:
    """Boolean (3, 17) matrix: entry [g, i] is True when station index i belongs to group g + 1.

    The trainer max-pools station probabilities over each row to get the group probabilities of §3.3.
    """
    _check_side(tumor_side)
    if tumor_side is None:
        raise UnknownTumorSideError("the station groups depend on the tumour side, which is unknown")
    return _group_masks(rule_set)[SIDES.index(tumor_side)].copy()


@functools.cache
def _group_masks(rule_set: str) -> np.ndarray:
    """Read-only (2, 3, 17): `group_mask` of each side of SIDES, as the stager applies them to every scan."""
    masks = np.zeros((len(SIDES), N_GROUPS, len(stations())), dtype=bool)
    for k, side in enumerate(SIDES):
        for g, group in enumerate(load_rule_set(rule_set).groups[side]):
            masks[k, g, [station(name).index for name in group]] = True
    masks.flags.writeable = False
    return masks


def status_vector(positive: Iterable[str], known: bool = True) -> np.ndarray:
    """int8[17] station status in catalogue order: 1 malignant, 0 benign, -1 unknown (known=False)."""
    vector = np.full(len(stations()), 0 if known else -1, dtype=np.int8)
    for name in positive:
        vector[station(name).index] = 1
    return vector
