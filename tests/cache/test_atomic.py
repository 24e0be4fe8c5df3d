"""Write-then-rename: a failure in the middle of a write leaves the old file and no temporary file."""

import pytest
import torch

from cache.atomic import atomic_path, write_text_atomic
from train.checkpoint import load_checkpoint, save_checkpoint


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "sub" / "result.json", "old")
    with pytest.raises(RuntimeError, match="mid-write"):
        with atomic_path(path) as temp:
            temp.write_text("half of the new")
            raise RuntimeError("mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["result.json"]


def test_a_finished_write_replaces_the_file_and_leaves_no_temporary(tmp_path):
    path = write_text_atomic(tmp_path / "result.json", "old")
    with atomic_path(path) as temp:
        assert temp.parent == path.parent and temp.name.startswith(".result.json.") and temp.suffix == ".tmp"
        temp.write_text("new")
        assert path.read_text() == "old"  # nothing at the target until the block ends
    assert path.read_text() == "new" and [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_a_checkpoint_that_fails_to_pickle_leaves_the_last_one(tmp_path):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "settings": {}, "epoch": 1})
    with pytest.raises(Exception, match="lambda|pickle"):
        save_checkpoint(path, {"model": {"w": torch.zeros(2)}, "settings": {}, "epoch": 2, "bad": lambda: 0})
    assert load_checkpoint(path)["epoch"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
