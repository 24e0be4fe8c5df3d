"""Stage labels: consistent with the paper rule set, realistic N-stage and station frequencies."""

from __future__ import annotations

from collections import Counter

import numpy as np

from cache.stations import n_stage
from preprocess.phantom.labels import draw_stage_labels


def test_labels_follow_the_rule_set_and_realistic_frequencies():
    draws = [draw_stage_labels(np.random.default_rng([1, i])) for i in range(3000)]
    assert all(n_stage(d.positive, d.tumor_side, "paper") == d.n_stage for d in draws)
    stages = Counter(d.n_stage for d in draws)
    for n, expected in enumerate((0.55, 0.12, 0.23, 0.10)):
        assert abs(stages[n] / len(draws) - expected) < 0.03, (n, stages)
    assert all(d.positive for d in draws if d.n_stage > 0)
    stations = Counter(name for d in draws for name in d.positive)
    top = {name for name, _ in stations.most_common(6)}
    assert {"4R", "4L", "7", "11R", "11L"} <= top, stations
    assert 0.45 < sum(d.tumor_side == "R" for d in draws) / len(draws) < 0.65
