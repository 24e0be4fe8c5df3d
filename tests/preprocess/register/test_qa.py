import numpy as np
import torch

from cache.grid import Grid
from preprocess.register.qa import STAGES, dice_scores, qa_figure, qa_record, qa_summary


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
