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


def _saved(tmp_path):
    state = {"model": torch.nn.Linear(64, 32).state_dict(), "epoch": 3, "settings": {"channels": [8, 16]},
             "rng": rng_states(np.random.default_rng(0), torch.Generator().manual_seed(0))}
    save_checkpoint(tmp_path / "last.pt", state)
    return tmp_path / "last.pt"


@pytest.mark.parametrize("damage, message", [
    (lambda b: b"", r"cannot be read"),
    (lambda b: b[: len(b) // 2], r"cannot be read"),
    (lambda b: b"not a checkpoint at all", r"cannot be read"),
])
def test_an_empty_or_truncated_checkpoint_names_the_file_and_the_fix(tmp_path, damage, message):
    path = _saved(tmp_path)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} {message} .*delete it and train again"):
        load_checkpoint(path)


def test_a_flipped_byte_in_the_weights_is_refused_not_resumed(tmp_path):
    """torch.load does not check the stored tensors' bytes (a damaged last.pt used to resume silently)."""
    path = _saved(tmp_path)
    content = bytearray(path.read_bytes())
    stored = torch.load(path, weights_only=True)["model"]["weight"].numpy().tobytes()
    at = bytes(content).find(stored[:64])  # where the weight matrix lies in the file
    assert at > 0
    content[at + 100] ^= 0x04
    path.write_bytes(bytes(content))
    with pytest.raises(CheckpointError, match=rf"checkpoint {path} does not match its checksum"):
        load_checkpoint(path)


def test_a_checkpoint_without_a_model_or_checksum_is_refused(tmp_path):
    torch.save({"epoch": 1}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"lacks model, settings, checksum"):
        load_checkpoint(tmp_path / "best.pt")
    torch.save({"model": {}, "settings": {}, "checksum": "0" * 32}, tmp_path / "best.pt")
    with pytest.raises(CheckpointError, match=r"does not match its checksum"):
        load_checkpoint(tmp_path / "best.pt")
