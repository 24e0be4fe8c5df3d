"""The station catalogue, the paper's Tables 1 and 3 for both sides, the tnm8 difference, and error cases."""

import numpy as np
import pytest

from cache.stations import (
    StationError,
    UnknownTumorSideError,
    group_mask,
    load_rule_set,
    n_stage,
    parse_station_list,
    pseudo_labels,
    station,
    station_by_code,
    station_names,
    sub_label_parents,
)

ALL = set(station_names())
# Table 1 / Table 3 of the paper (docs/architecture.md#stations-and-n-stage-rules): group -> stations, per tumour side.
PAPER = {
    "R": {1: {"10R", "11R"}, 2: {"1R", "2R", "3A", "3P", "4R", "5", "6", "7", "8", "9"},
          3: {"1L", "2L", "4L", "10L", "11L"}},
    "L": {1: {"10L", "11L"}, 2: {"1L", "2L", "3A", "3P", "4L", "5", "6", "7", "8", "9"},
          3: {"1R", "2R", "4R", "10R", "11R"}},
}


def test_catalogue_codes_follow_lynch_coding():
    assert station_names() == ("1L", "1R", "2L", "2R", "3A", "3P", "4L", "4R", "5", "6", "7", "8", "9",
                               "10L", "10R", "11L", "11R")
    assert station("7").code == 11 and station("7").index == 10
    assert station_by_code(17).name == "11R"
    assert sub_label_parents()["11Ri"] == "11R" and sub_label_parents()["3AL"] == "3A"


@pytest.mark.parametrize("side", ["R", "L"])
@pytest.mark.parametrize("group", [1, 2, 3])
def test_every_station_of_each_group_gives_its_stage(side, group):
    for name in PAPER[side][group]:
        assert n_stage([name], side) == group, name


@pytest.mark.parametrize("side", ["R", "L"])
def test_groups_cover_each_station_once_except_3a_3p_contralateral(side):
    groups = PAPER[side]
    assert not (groups[1] & groups[2]) and not (groups[2] & groups[3]) and not (groups[1] & groups[3])
    assert groups[1] | groups[2] | groups[3] == ALL


@pytest.mark.parametrize("side", ["R", "L"])
def test_highest_group_wins_and_n0_without_positives(side):
    assert n_stage([], side) == 0
    g1, g2, g3 = (sorted(PAPER[side][g])[0] for g in (1, 2, 3))
    assert n_stage([g1, g2], side) == 2
    assert n_stage([g1, g3], side) == 3
    assert n_stage([g2, g3, g1], side) == 3


def test_group_mask_matches_table_3():
    for side in ("R", "L"):
        mask = group_mask(side)
        assert mask.shape == (3, 17)
        for g in (1, 2, 3):
            assert {station_names()[i] for i in np.flatnonzero(mask[g - 1])} == PAPER[side][g]


def test_tnm8_station_1_is_n3_on_either_side():
    for side in ("R", "L"):
        assert n_stage(["1R"], side, "tnm8") == 3
        assert n_stage(["1L"], side, "tnm8") == 3
    assert n_stage(["1R"], "R", "paper") == 2  # the paper's ipsilateral station 1 is N2
    assert n_stage(["1L"], "L", "paper") == 2
    # everything but station 1 agrees between the rule sets
    for side in ("R", "L"):
        for name in ALL - {"1R", "1L"}:
            assert n_stage([name], side, "tnm8") == n_stage([name], side, "paper"), (side, name)


def test_pseudo_labels_table_3():
    assert pseudo_labels(0) == (0, 0, 0)
    assert pseudo_labels(1) == (1, 0, 0)
    assert pseudo_labels(2) == (None, 1, 0)
    assert pseudo_labels(3) == (None, None, 1)


def test_unknown_side_stages_only_when_both_sides_agree():
    assert n_stage([], None) == 0
    assert n_stage(["7"], None) == 2
    with pytest.raises(UnknownTumorSideError, match="side R"):
        n_stage(["10R"], None)


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: n_stage(["4X"], "R"), "unknown station '4X'"),
        (lambda: n_stage(["4R"], "X"), "tumour side must be 'R' or 'L'.*'X'"),
        (lambda: pseudo_labels(4), "N-stage must be an integer 0-3, got 4"),
        (lambda: pseudo_labels(-1), "got -1"),
        (lambda: n_stage(["4R"], "R", "tnm7"), "unknown rule set 'tnm7'"),
        (lambda: parse_station_list("4R;12Q"), "'12Q'"),
        (lambda: station_by_code(18), "18"),
    ],
)
def test_bad_values_are_named(call, match):
    with pytest.raises(StationError, match=match):
        call()


def test_rule_sets_are_data():
    assert load_rule_set("paper").groups["R"][0] == frozenset({"10R", "11R"})
    assert "1R" in load_rule_set("tnm8").groups["R"][2]
