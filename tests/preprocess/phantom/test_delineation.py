"""Atlas rater variation: delineations differ, yet their majority vote keeps node centres in their station."""

from __future__ import annotations

import numpy as np

from cache.stations import station
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.delineation import delineate
from preprocess.phantom.labels import StageLabels
from preprocess.phantom.scan import simulate_scan


def _vote(delineations: list[np.ndarray]) -> np.ndarray:
    counts = np.stack([(np.stack(delineations) == code).sum(axis=0) for code in range(18)])
    return counts.argmax(axis=0)


def test_majority_vote_of_five_delineations_keeps_node_centres_in_their_station():
    grid = field_grid((320.0, 260.0, 240.0), 2.0)
    hits, total = 0, 0
    for seed, labels in ((21, StageLabels("R", 2, ("4R", "7", "11R"))), (22, StageLabels("L", 3, ("4L", "4R")))):
        scan = simulate_scan(np.random.default_rng(seed), grid, labels, pet_factor=2)
        delineations = [delineate(scan.stations, 2.0, np.random.default_rng([seed, rater])) for rater in range(5)]
        for first in range(5):
            for second in range(first + 1, 5):
                assert (delineations[first] != delineations[second]).any()
        assert all((d != scan.stations).mean() > 0.001 for d in delineations)
        vote = _vote(delineations)
        for node in scan.nodes:
            index = tuple(np.rint(grid.physical_to_index(node.blob.centre_mm)).astype(int))
            hits += vote[index] == station(node.station).code
            total += 1
    assert total >= 30
    assert hits / total >= 0.95, (hits, total)
