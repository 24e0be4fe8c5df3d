"""`python -m train`: --print-config output fed back with --config reproduces the run's config.json; the log."""

import json
import shutil

from train.__main__ import main


def test_print_config_fed_back_reproduces_config_json(tiny_dataset, tmp_path, capsys):
    argv = ["ts1", "--dataset", str(tiny_dataset), "--runs-dir", str(tmp_path), "--max-epochs", "1",
            "--no-augment", "--lr", "0.002"]
    assert main(argv) == 0
    fold = tmp_path / "tiny" / "ts1" / "fold0"
    recorded = json.loads((fold / "config.json").read_text())
    log = (fold / "train.log").read_text()
    assert "lr = 0.002" in log and "epoch 1:" in log and "=== exit 0;" in log
    capsys.readouterr()
    assert main([*argv, "--print-config"]) == 0
    printed = tmp_path / "ts1.toml"
    printed.write_text(capsys.readouterr().out)
    shutil.rmtree(fold)
    assert main(["ts1", "--config", str(printed)]) == 0
    assert json.loads((fold / "config.json").read_text()) == recorded
