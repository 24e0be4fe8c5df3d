import pytest

from cache.settings import SettingsError
from train.settings import TrainSettings, parse_train_settings


def test_stage_preset_then_dataset_table_then_flags(tiny_dataset):
    ts2 = parse_train_settings(["ts2", "--dataset", str(tiny_dataset)])
    assert ts2.batch_size == 8  # the dataset's [train] table over the ts2 preset's 16
    assert ts2.channels == (4, 8) and ts2.stage == "ts2"
    flagged = parse_train_settings(["ts2", "--dataset", str(tiny_dataset), "--batch-size", "4", "--lr", "0.01"])
    assert (flagged.batch_size, flagged.lr) == (4, 0.01)
    assert parse_train_settings(["ts3"]).batch_size == 16 and parse_train_settings(["ts1"]).batch_size == 64


def test_demo_preset_is_the_five_block_32_patch_model():
    demo = parse_train_settings(["ts1", "--dataset", "demo"])
    assert demo.patch_size_vox == 32 and len(demo.channels) == 5


def test_unknown_key_in_the_dataset_train_table_is_named(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('root = "."\n[train]\nlearning_rate = 0.1\n')
    with pytest.raises(SettingsError, match="learning_rate"):
        parse_train_settings(["ts1", "--dataset", str(config)])


def test_inconsistent_model_settings_are_refused():
    with pytest.raises(ValueError, match="one rate per conv block"):
        TrainSettings(channels=(8, 16), dropout=(0.1,))
    with pytest.raises(ValueError, match="multiple of 2\\*\\*6"):
        TrainSettings(patch_size_vox=48)
    with pytest.raises(ValueError, match="fold=5"):
        TrainSettings(fold=5)


def test_a_stage_sub_table_of_the_dataset_train_table_applies_to_that_stage_only(tmp_path):
    config = tmp_path / "staged.toml"
    config.write_text('root = "."\n[train]\nmax_epochs = 12\n[train.ts3]\nmax_epochs = 60\nhead_lr = 0.01\n')
    ts1, ts3 = (parse_train_settings([stage, "--dataset", str(config)]) for stage in ("ts1", "ts3"))
    assert (ts1.max_epochs, ts1.head_lr) == (12, 0.0) and (ts3.max_epochs, ts3.head_lr) == (60, 0.01)
    config.write_text('root = "."\n[train.ts2]\nheadlr = 0.01\n')
    with pytest.raises(SettingsError, match=r"\[train.ts2\]: unknown setting\(s\) headlr"):
        parse_train_settings(["ts2", "--dataset", str(config)])
