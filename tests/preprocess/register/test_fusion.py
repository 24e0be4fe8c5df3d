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


def test_box_accumulator_equals_dense_votes_and_sums_bit_for_bit():
    """Atlases whose stations cover different boxes (the box grows three times), with exact count ties."""
    g = torch.Generator().manual_seed(5)
    shape, n_codes = (9, 11, 13), 4
    atlases = []
    middle = (slice(2, 5), slice(3, 7), slice(4, 9))
    for box in (middle, (slice(0, 1), slice(0, 2), slice(0, 3)), middle, middle,
                (slice(6, 9), slice(8, 11), slice(10, 13))):
        p = torch.zeros(*shape, n_codes + 1)
        p[..., 0] = 1.0 - torch.rand(shape, generator=g) * 1e-6  # not exactly 1, as trilinear weights sum
        p[box] = torch.rand(*p[box].shape, generator=g).round(decimals=1)  # many exact ties
        p[(*box, 2)] = 0.9  # code 2 wins most voxels of the box where three atlases overlap
        atlases.append(p.reshape(-1, n_codes + 1))
    votes = VoteAccumulator(n_codes, shape, "cpu")
    counts = torch.zeros(n_codes + 1, int(np.prod(shape)), dtype=torch.uint8)
    summed = torch.zeros(int(np.prod(shape)), n_codes + 1)
    for p in atlases:
        assert torch.equal(votes.add(p), p.argmax(1))
        counts += p.argmax(1).unsqueeze(0) == torch.arange(n_codes + 1).unsqueeze(1)
        summed += p
    labels, fused_counts = votes.fused()
    dense = (counts.t().float() + 0.5 * summed / len(atlases)).argmax(1).to(torch.uint8).reshape(shape)
    np.testing.assert_array_equal(labels, dense.numpy())
    np.testing.assert_array_equal(fused_counts, counts[1:].reshape(-1, *shape).numpy())
    assert votes.box == (slice(0, 9), slice(0, 11), slice(0, 13)) and (labels > 0).any()
