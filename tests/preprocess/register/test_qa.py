import numpy as np
import pytest
import torch

from cache.describe import registration_check_text
from cache.grid import Grid
from preprocess.register.qa import STAGES, dice_scores, qa_figure, qa_record, qa_summary, registration_check


def test_dice_of_known_overlaps():
    fixed = torch.tensor([1, 1, 1, 1, 2, 2, 0, 0])
    warped = torch.tensor([1, 1, 0, 0, 2, 2, 2, 0])
    dice = dice_scores(fixed, warped, 3).numpy()
    np.testing.assert_allclose(dice, [2 * 2 / 6, 2 * 2 / 5, 1.0])


def test_qa_record_counts_folded_voxels():
    jacobian = torch.tensor([[[[1.2, 0.9], [-0.1, 1.0]]]])
    record = qa_record("a", "deformable", ("trachea", "aorta"), np.array([0.9, 0.7]), np.array([True, False]),
                       jacobian, 3.0)
    assert record["dice"] == {"trachea": 0.9} and record["dice_mean"] == 0.9
    assert record["folding_fraction"] == 0.25 and record["jacobian_min"] == np.float32(-0.1).item()
    linear = qa_record("a", "linear", ("trachea",), np.array([0.5]), np.array([True]), 1.1, 1.0)
    assert linear["jacobian_min"] == linear["jacobian_max"] == 1.1 and linear["folding_fraction"] == 0.0
    assert qa_summary([record, linear]) == {"linear": 0.5, "deformable": 0.9}
    assert STAGES == ("initial", "linear", "deformable")


def test_qa_figure_is_written(tmp_path):
    ct = np.zeros((6, 8, 8), dtype=np.int16)
    labels = np.zeros((6, 8, 8), dtype=np.uint8)
    labels[2:4, 3:5, 3:5] = 7
    path = qa_figure(ct, labels, tmp_path / "qa.png", "title", grid=Grid(labels.shape, (1.0, 1.0, 2.0), (0, 0, 0)))
    assert path.stat().st_size > 1000


def test_qa_figure_sets_no_global_matplotlib_backend(tmp_path):
    """A notebook's inline backend must survive a QA picture (qa_figure used to call matplotlib.use("Agg"))."""
    import matplotlib

    before = matplotlib.get_backend()
    matplotlib.use("svg")
    try:
        labels = np.zeros((6, 8, 8), dtype=np.uint8)
        labels[2:4, 3:5, 3:5] = 7
        qa_figure(np.zeros(labels.shape, np.int16), labels, tmp_path / "qa.png",
                  grid=Grid(labels.shape, (1, 1, 1), (0, 0, 0)))
        assert matplotlib.get_backend() == "svg"
    finally:
        matplotlib.use(before)


def test_held_out_groups_are_scored_apart_from_driving_ones():
    record = qa_record("a", "deformable", ("trachea", "aorta", "esophagus"), np.array([0.9, 0.8, 0.4]),
                       np.array([True, True, True]), 1.0, 1.0, held_out=("esophagus",))
    assert record["dice"] == {"trachea": 0.9, "aorta": 0.8} and record["dice_mean"] == pytest.approx(0.85)
    assert record["held_out_dice"] == {"esophagus": 0.4} and record["held_out_dice_mean"] == 0.4
    assert np.isnan(qa_record("a", "linear", ("trachea",), np.array([0.5]), np.array([True]), 1.0, 1.0)[
        "held_out_dice_mean"])


def _deformable(held: float, j_min: float, j_max: float) -> dict:
    return {"stage": "deformable", "dice_mean": 0.9, "held_out_dice_mean": held, "jacobian_min": j_min,
            "jacobian_max": j_max}


def test_registration_check_flags_values_outside_the_limits():
    good = [_deformable(0.8, 0.5, 1.8), _deformable(0.7, 0.6, 1.5), {"stage": "linear", "dice_mean": 0.1,
                                                                       "held_out_dice_mean": 0.0}]
    check = registration_check(good, 0.65, 0.4, 2.0)
    assert check["flags"] == "" and check["held_out_dice_min"] == 0.7 and check["held_out_dice"] == pytest.approx(0.75)
    assert (check["jacobian_min"], check["jacobian_max"], check["driving_dice"]) == (0.5, 1.8, 0.9)
    assert registration_check(good, 0.75, 0.4, 2.0)["flags"] == "held_out_dice"
    assert registration_check(good, 0.65, 0.55, 2.0)["flags"] == "jacobian"
    assert registration_check(good, 0.65, 0.4, 1.6)["flags"] == "jacobian"
    assert registration_check(good, 0.0, 0.0, float("inf"))["flags"] == ""  # no limits: nothing flagged
    no_held_out = [_deformable(float("nan"), 0.5, 1.8)]
    assert registration_check(no_held_out, 0.65, 0.4, 2.0)["flags"] == "held_out_dice"  # a limit it cannot check
    text = registration_check_text(registration_check(good, 0.75, 0.55, 2.0))
    assert "held out 0.750 (worst atlas 0.700)" in text
    assert "FLAG held-out Dice below 0.750, Jacobian outside 0.55 to 2.00" in text
    assert registration_check_text(check).endswith("within limits")
    assert "driving 0.900, no structure held out" in registration_check_text(registration_check(no_held_out, 0.0, 0.4,
                                                                                                  2.0))
