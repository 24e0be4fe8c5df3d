import numpy as np
import torch

from preprocess.register.fusion import StationMap, VoteAccumulator, majority_vote


def _probabilities(labels: np.ndarray, n_codes: int, soft: float = 1.0) -> torch.Tensor:
    one_hot = np.eye(n_codes + 1, dtype=np.float32)[labels.ravel()]
    return torch.from_numpy(soft * one_hot + (1 - soft) / (n_codes + 1))


def test_majority_vote_on_hand_made_labels():
    atlases = np.array([[[1, 2, 0, 3]], [[1, 2, 2, 0]], [[1, 3, 2, 0]]], dtype=np.uint8)  # (3, 1, 4)
    labels, counts = majority_vote(atlases, 3)
    np.testing.assert_array_equal(labels, [[1, 2, 2, 0]])
    np.testing.assert_array_equal(counts[:, 0, 0], [3, 0, 0])
    np.testing.assert_array_equal(counts[:, 0, 3], [0, 0, 1])


def test_accumulator_votes_and_breaks_ties_by_probability():
    votes = VoteAccumulator(3, (1, 3), "cpu")
    votes.add(_probabilities(np.array([1, 2, 3]), 3))
    votes.add(_probabilities(np.array([1, 3, 2]), 3))
    # voxel 1: 2 vs 3 tie; the third atlas is unsure but leans to 3 (argmax 0 = background)
    third = torch.tensor([[0.1, 0.8, 0.05, 0.05], [0.4, 0.0, 0.25, 0.35], [0.9, 0.0, 0.1, 0.0]])
    votes.add(third)
    labels, counts = votes.fused()
    assert labels.tolist() == [[1, 3, 2]]
    assert counts[:, 0, 0].tolist() == [3, 0, 0]
    station_map = StationMap(labels=labels, votes=counts, n_atlases=3)
    np.testing.assert_allclose(station_map.vote_fraction[0, 0, 0], 1.0)
    assert station_map.vote_fraction.dtype == np.float32 and station_map.vote_fraction.shape == (3, 1, 3)
