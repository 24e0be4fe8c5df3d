"""docs/slurm/: the sbatch templates are valid bash, and the command lines they run parse with today's flags."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

import evaluate.__main__
import preprocess.__main__
import train.__main__

SLURM = Path(__file__).resolve().parents[1] / "docs" / "slurm"
PARSERS = {"preprocess": preprocess.__main__.COMMAND.parse, "train": train.__main__.COMMAND.parse,
           "evaluate": lambda argv: evaluate.__main__.GROUP.commands[argv[0]][0].parse(argv[1:])}
ARRAY_TASK = {"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_MIN": "0",
              "SLURM_CPUS_PER_TASK": "4"}


@pytest.mark.parametrize("path", sorted(SLURM.glob("*.s*")), ids=lambda p: p.name)
def test_template_is_valid_bash(path):
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0


@pytest.mark.parametrize("name, package, extra_env", [
    ("preprocess_array.sbatch", "preprocess", {}),
    ("train_folds.sbatch", "train", {"STAGE": "ts2", "RESUME": "1"}),
    ("evaluate.sbatch", "evaluate", {}),
])
def test_template_runs_a_command_line_that_parses(name, package, extra_env, tmp_path, monkeypatch):
    """Run the template with a stand-in `python` that records its arguments, then parse them."""
    record = tmp_path / "argv"
    fake = tmp_path / "bin" / "python"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/bash\nprintf "%s\\n" "$@" > {record}\n')
    fake.chmod(0o755)
    env = {**os.environ, **ARRAY_TASK, **extra_env, "PATH": f"{fake.parent}:{os.environ['PATH']}",
           "SLURM_SUBMIT_DIR": str(Path.cwd())}
    subprocess.run(["bash", str(SLURM / name)], env=env, check=True, timeout=60)
    argv = record.read_text().splitlines()
    assert argv[:2] == ["-m", package]
    for key, value in ARRAY_TASK.items():
        monkeypatch.setenv(key, value)
    settings = PARSERS[package](argv[2:])[0]
    if package == "preprocess":
        assert settings.shard == "3/5"
    if package == "train":
        assert (settings.stage, settings.fold, settings.resume, settings.num_workers) == ("ts2", 3, True, 4)
    if package == "evaluate":
        assert settings.run == "runs/demo/ts1"
