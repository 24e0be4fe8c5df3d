"""Per-patient truth labels: tumour side, N-stage and positive stations that follow nodal drainage.

Stations are drawn group by group of the `paper` rule set so the stage is right by construction, and each
draw is weighted by how often the station is positive in practice (the paper's Fig. 7: 4R, 4L, 7, 11R and
11L most often). The result is checked against `cache.stations.n_stage`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cache.stations import load_rule_set, n_stage, station

N_STAGE_PROBABILITIES = (0.55, 0.12, 0.23, 0.10)
RIGHT_SIDE_PROBABILITY = 0.55
RULE_SET = "paper"

# Relative frequency of a station being positive, among the stations of the group being drawn.
STATION_WEIGHTS = {
    "1R": 0.3, "1L": 0.3, "2R": 0.8, "2L": 0.6, "3A": 0.35, "3P": 0.25, "4R": 3.2, "4L": 3.2, "5": 0.9, "6": 0.4,
    "7": 2.6, "8": 0.35, "9": 0.2, "10R": 0.7, "10L": 0.7, "11R": 2.0, "11L": 1.8,
}


@dataclass(frozen=True)
class StageLabels:
    tumor_side: str
    n_stage: int
    positive: tuple[str, ...]  # in catalogue order


def _draw_from(group: frozenset[str], count: int, rng: np.random.Generator) -> list[str]:
    names = sorted(group)
    weights = np.array([STATION_WEIGHTS[n] for n in names])
    count = min(count, len(names))
    return [str(name) for name in rng.choice(names, size=count, replace=False, p=weights / weights.sum())]


def _count(rng: np.random.Generator, mean_extra: float, cap: int) -> int:
    return int(min(1 + rng.poisson(mean_extra), cap))


def draw_stage_labels(rng: np.random.Generator) -> StageLabels:
    """Side, N-stage (about 55/12/23/10 %) and positive stations consistent with the `paper` rule set."""
    side = "R" if rng.random() < RIGHT_SIDE_PROBABILITY else "L"
    n = int(rng.choice(4, p=N_STAGE_PROBABILITIES))
    g1, g2, g3 = load_rule_set(RULE_SET).groups[side]
    positive: list[str] = []
    if n == 1:
        positive += _draw_from(g1, _count(rng, 0.3, 2), rng)
    if n >= 2 and (n == 2 or rng.random() < 0.85):
        positive += _draw_from(g2, _count(rng, 0.6, 4), rng)
    if n >= 2 and rng.random() < 0.6:
        positive += _draw_from(g1, _count(rng, 0.3, 2), rng)
    if n == 3:
        positive += _draw_from(g3, _count(rng, 0.3, 3), rng)
    ordered = tuple(sorted(set(positive), key=lambda name: station(name).code))
    assert n_stage(ordered, side, RULE_SET) == n, (ordered, side, n)
    return StageLabels(side, n, ordered)
