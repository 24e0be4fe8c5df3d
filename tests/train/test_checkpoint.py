import numpy as np
import pytest
import torch

from train.checkpoint import CheckpointError, load_checkpoint, restore_rng_states, rng_states, save_checkpoint


def test_checkpoint_round_trips_with_weights_only_and_leaves_no_temporary_file(tmp_path):
    data_rng, generator = np.random.default_rng(5), torch.Generator().manual_seed(5)
    state = {"model": torch.nn.Linear(2, 1).state_dict(), "epoch": 3, "best_metric": 0.7,
             "settings": {"channels": [8, 16]}, "rng": rng_states(data_rng, generator)}
    save_checkpoint(tmp_path / "last.pt", state)
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    loaded = load_checkpoint(tmp_path / "last.pt")
    assert loaded["epoch"] == 3 and loaded["settings"] == {"channels": [8, 16]}
    expected = (data_rng.random(), torch.rand(1, generator=generator).item(), torch.rand(1).item())
    other_rng, other_generator = np.random.default_rng(9), torch.Generator().manual_seed(9)
    restore_rng_states(loaded["rng"], other_rng, other_generator)
    assert (other_rng.random(), torch.rand(1, generator=other_generator).item(), torch.rand(1).item()) == expected


def test_missing_checkpoint_is_an_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "best.pt")
