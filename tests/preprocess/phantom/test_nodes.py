"""Benign uptake is a property of the patient: its state decides which stations hold a hot benign node."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from cache.stations import station_names
from preprocess.phantom.nodes import BENIGN_STATES, draw_benign_uptake
from preprocess.phantom.settings import PhantomSettings

SETTINGS = PhantomSettings(benign_state_fractions=(0.5, 0.3, 0.2),
                           benign_state_fractions_node_positive=(0.2, 0.3, 0.5), mild_hot_stations=2.0,
                           granulomatous_hot_stations=6.0)


def _draws(count: int, positive: tuple[str, ...] = ()) -> list:
    rng = np.random.default_rng(0)
    return [draw_benign_uptake(rng, station_names(), positive, SETTINGS) for _ in range(count)]


def test_states_follow_their_fractions_and_only_reactive_patients_have_hot_stations():
    draws = _draws(4000)
    counts = Counter(d.state for d in draws)
    for state, fraction in zip(BENIGN_STATES, SETTINGS.benign_state_fractions, strict=True):
        assert abs(counts[state] / len(draws) - fraction) < 0.03, state
    assert all(not d.hot_stations for d in draws if d.state == "none")
    mild = np.mean([len(d.hot_stations) for d in draws if d.state == "mild"])
    granulomatous = np.mean([len(d.hot_stations) for d in draws if d.state == "granulomatous"])
    assert abs(mild - 2.0) < 0.15 and abs(granulomatous - 6.0) < 0.3
    assert all(d.hot_suv == SETTINGS.mild_hot_suv for d in draws if d.state == "mild")
    assert all(d.hot_suv == SETTINGS.granulomatous_hot_suv for d in draws if d.state == "granulomatous")


def test_node_positive_patients_draw_their_state_from_their_own_fractions():
    counts = Counter(d.state for d in _draws(4000, positive=("4R",)))
    for state, fraction in zip(BENIGN_STATES, SETTINGS.benign_state_fractions_node_positive, strict=True):
        assert abs(counts[state] / 4000 - fraction) < 0.03, state


def test_hot_benign_nodes_prefer_hilar_and_subcarinal_stations():
    hot = Counter(name for d in _draws(3000) for name in d.hot_stations)
    for hilar in ("7", "10R", "10L", "11R", "11L"):
        for upper in ("1R", "1L", "2R", "2L", "3P"):
            assert hot[hilar] > 2 * hot[upper], (hilar, upper)


def test_a_positive_station_is_never_a_hot_benign_one():
    positive = ("4R", "7", "10R")
    assert all(not (d.hot_stations & set(positive)) for d in _draws(500, positive))


def test_the_same_generator_state_gives_the_same_uptake():
    first = draw_benign_uptake(np.random.default_rng(5), station_names(), (), SETTINGS)
    again = draw_benign_uptake(np.random.default_rng(5), station_names(), (), SETTINGS)
    assert first == again


@pytest.mark.parametrize("field, value, message", [
    ("benign_state_fractions", (0.5, 0.3, 0.3), "benign_state_fractions must be 3 non-negative values"),
    ("benign_state_fractions", (0.5, 0.5), "benign_state_fractions must be 3"),
    ("benign_state_fractions_node_positive", (0.5, 0.6, 0.0), "benign_state_fractions_node_positive must be 3"),
    ("mild_hot_stations", -1.0, "mild_hot_stations must be >= 0"),
    ("granulomatous_hot_suv", 0.0, "granulomatous_hot_suv must be > 0"),
    ("malignant_low_uptake_fraction", 1.2, "malignant_low_uptake_fraction must be in"),
])
def test_uptake_settings_refuse_bad_values(field: str, value, message: str):
    with pytest.raises(ValueError, match=message):
        PhantomSettings(**{field: value})
