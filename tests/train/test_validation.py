"""The validation scores and the one that selects the best TS1 epoch."""

from types import SimpleNamespace

import numpy as np
import pytest

from train.loop import balanced_accuracy_se, selection_metric, validation_scores
from train.settings import TrainSettings


def _part_and_predictions(status, probability):
    status = np.array([status], dtype=np.int8)
    part = SimpleNamespace(station_status=status, n_stage=np.array([2]))
    predictions = SimpleNamespace(station_prob=np.array([probability], dtype=float), n_pred=np.array([2]))
    return part, predictions


@pytest.mark.filterwarnings("ignore:A single label:UserWarning")  # one scan: one N-stage class
def test_auc_and_balanced_accuracy_are_computed_on_known_present_stations_only():
    # a perfect ranking whose cutoff 0.5 calls one benign station malignant; NaN (absent) and -1 (unknown) skipped
    part, predictions = _part_and_predictions([1, 1, 0, 0, 0, -1, 0], [0.9, 0.8, 0.7, 0.2, 0.1, 0.99, np.nan])
    scores = validation_scores(part, predictions)
    assert scores["station_auc"] == pytest.approx(1.0)
    assert scores["station_bacc"] == pytest.approx((1.0 + 2 / 3) / 2)
    assert scores["n_bacc"] == pytest.approx(1.0)


def test_the_selection_metric_follows_val_metric_for_ts1_and_is_the_n_stage_score_otherwise():
    scores = {"station_bacc": 0.7, "station_auc": 0.9, "n_bacc": 0.4}
    assert selection_metric(scores, TrainSettings()) == 0.7
    assert selection_metric(scores, TrainSettings(val_metric="auc")) == 0.9
    assert selection_metric(scores, TrainSettings(stage="ts2", val_metric="auc")) == 0.4


@pytest.mark.filterwarnings("ignore:A single label:UserWarning", "ignore:y_pred contains classes:UserWarning")
def test_an_undefined_auc_counts_as_the_worst_score():
    part, predictions = _part_and_predictions([0, 0, 0], [0.1, 0.6, 0.2])  # no malignant station to rank
    assert validation_scores(part, predictions)["station_auc"] == 0.0


def test_the_balanced_accuracy_standard_error_uses_plus_two_recalls_per_class():
    # class 0: 2 of 3 right, recall estimate 3/5; class 1: 1 of 1, estimate 2/3 (not 1: one scan proves little)
    expected = np.sqrt(0.6 * 0.4 / 3 + (2 / 3) * (1 / 3) / 1) / 2
    assert balanced_accuracy_se(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(expected)
