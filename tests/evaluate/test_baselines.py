"""Both baselines on a small cohort of arrays whose answers are known."""

import numpy as np
import pytest

from cache.stations import UNSTAGEABLE, stage_scans, station
from evaluate.baselines.cutoff import choose_cutoff, predict_above
from evaluate.baselines.lesion_overlap import choose_overlap, label_lesions, station_overlap
from evaluate.baselines.pet_lesions import segment_pet_lesions
from evaluate.baselines.thresholding import SUV_THRESHOLDS, choose_threshold


def test_threshold_chosen_by_training_balanced_accuracy():
    # malignant stations at SUVmax 4.2-6, benign at 2-3.8: 4.0 separates perfectly, nothing else does
    suv = np.full((3, 17), 2.0)
    labels = np.zeros((3, 17), dtype=np.int8)
    suv[0, 7], suv[1, 10], suv[2, 14] = 4.2, 6.0, 5.0
    labels[0, 7] = labels[1, 10] = labels[2, 14] = 1
    suv[0, 3], suv[1, 4] = 3.8, 3.6
    choice = choose_threshold(suv, labels)
    assert choice.cutoff == 4.0
    assert choice.candidates == SUV_THRESHOLDS
    assert max(choice.training_balanced_accuracy) == pytest.approx(1.0)
    assert predict_above(suv, choice.cutoff).tolist() == labels.tolist()


def test_threshold_ignores_unknown_labels_and_nan_stations_are_benign():
    suv = np.array([[np.nan, 5.0, 1.0] + [1.0] * 14])
    labels = np.array([[-1, 1, 0] + [0] * 14], dtype=np.int8)
    assert choose_threshold(suv, labels).cutoff == 2.5  # every candidate is perfect; the first wins
    assert predict_above(suv, 2.5)[0, :3].tolist() == [0, 1, 0]


def test_cutoff_refuses_training_stations_of_one_class():
    with pytest.raises(ValueError, match="one class only"):
        choose_cutoff(np.ones((2, 17)), np.zeros((2, 17), dtype=np.int8), (1.0, 2.0))


def test_predict_above_is_strict():
    assert predict_above(np.array([2.5, 2.51]), 2.5).tolist() == [0, 1]


def _stations_left_right(shape=(8, 8, 8)):
    """Station 4R (code 8) fills x < 4, station 7 (code 11) fills x >= 4, in the upper half of z only."""
    stations = np.zeros(shape, dtype=np.uint8)
    stations[:4, :, :4] = station("4R").code
    stations[:4, :, 4:] = station("7").code
    return stations


def test_overlap_assigns_each_lesion_to_its_best_station():
    stations = _stations_left_right()
    lesions = np.zeros_like(stations)
    lesions[1:3, 1:3, 2:5] = 1  # 12 voxels: 8 in 4R (x 2, 3), 4 in 7 (x 4) -> 4R with 2/3
    lesions[6:8, 6:8, 6:8] = 1  # outside every station
    labelled, count = label_lesions(lesions)
    assert count == 2
    overlap = station_overlap(labelled, count, stations)
    assert overlap[station("4R").index] == pytest.approx(2 / 3)
    assert overlap[station("7").index] == 0.0  # the lesion went to 4R, not to both
    assert np.count_nonzero(overlap) == 1


def test_overlap_fraction_below_cutoff_is_benign():
    stations = _stations_left_right()
    lesions = np.zeros_like(stations)
    lesions[3:6, 0, 0] = 1  # 3 voxels, 1 in station 4R (z 3): overlap 1/3
    labelled, count = label_lesions(lesions)
    overlap = station_overlap(labelled, count, stations)[None]
    assert predict_above(overlap, 0.2)[0, station("4R").index] == 1
    lesions[3:8, 0, 0] = 1  # 5 voxels, overlap 1/5 = 0.2: not above 0.2
    labelled, count = label_lesions(lesions)
    overlap = station_overlap(labelled, count, stations)[None]
    assert predict_above(overlap, 0.2)[0, station("4R").index] == 0
    assert predict_above(overlap, 0.1)[0, station("4R").index] == 1


def test_overlap_choice_on_training_scans():
    overlap = np.zeros((2, 17))
    labels = np.zeros((2, 17), dtype=np.int8)
    overlap[0, 7], labels[0, 7] = 0.15, 1  # a true lesion overlapping 15 %
    overlap[1, 10] = 0.08  # a spill-over from a neighbour: benign
    assert choose_overlap(overlap, labels).cutoff == 0.1


def test_overlap_refuses_masks_on_another_grid():
    with pytest.raises(ValueError, match="cache grid"):
        station_overlap(np.zeros((2, 2, 2), dtype=np.int32), 0, np.zeros((2, 2, 3), dtype=np.uint8))


def test_segmenter_keeps_hot_components_above_the_minimum_volume():
    suv = np.ones((10, 10, 10), dtype=np.float32)
    suv[1:4, 1:4, 1:4] = 6.0  # 27 voxels of 2 mm = 0.216 ml
    suv[8, 8, 8] = 9.0  # one voxel, 0.008 ml: dropped
    labels, count = segment_pet_lesions(suv, (2.0, 2.0, 2.0), 2.5, 0.2)
    assert count == 1
    assert np.count_nonzero(labels) == 27 and labels[2, 2, 2] == 1 and labels[8, 8, 8] == 0
    _, none = segment_pet_lesions(suv, (2.0, 2.0, 2.0), 10.0, 0.2)
    assert none == 0


def test_stage_scans_applies_the_rule_set_and_marks_unstageable():
    positive = np.zeros((4, 17), dtype=bool)
    positive[1, station("10R").index] = True  # N1 for side R
    positive[2, station("4L").index] = True  # N3 for side R
    positive[3, station("4L").index] = True  # side unknown: N2 (L) or N3 (R)
    stages = stage_scans(positive, ["R", "R", "R", None], "paper")
    assert stages.tolist() == [0, 1, 3, UNSTAGEABLE]
    with pytest.raises(ValueError, match="station calls"):
        stage_scans(positive[:, :5], ["R"] * 4, "paper")
