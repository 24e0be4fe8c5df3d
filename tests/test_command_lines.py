"""Every command as a user meets it: no arguments, --help, and each user error gives one line and its exit code.

Exit codes: 0 done, 1 failed work, 2 usage (a bad or missing flag, an unknown dataset, a setting out of range).
"""

from __future__ import annotations

import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

import pytest

import cache.__main__
import evaluate.__main__
import preprocess.__main__
import preprocess.import_tcia
import preprocess.phantom.__main__
import preprocess.phantom.calibrate
import preprocess.phantom.tcia
import preprocess.register.__main__
import preprocess.suv
import train.__main__

REPO = Path(__file__).resolve().parents[1]
CLIS = {
    "preprocess": preprocess.__main__.cli,
    "preprocess.phantom": preprocess.phantom.__main__.cli,
    "preprocess.phantom.calibrate": preprocess.phantom.calibrate.main,
    "preprocess.phantom.tcia": preprocess.phantom.tcia.cli,
    "preprocess.import_tcia": preprocess.import_tcia.cli,
    "preprocess.register": preprocess.register.__main__.cli,
    "preprocess.suv": preprocess.suv.main,
    "train": train.__main__.cli,
    "evaluate": evaluate.__main__.cli,
    "cache": cache.__main__.cli,
}
HELP = [("preprocess", []), ("preprocess.phantom", []), ("preprocess.register", []), ("preprocess.suv", []),
        ("preprocess.phantom.calibrate", []), ("preprocess.phantom.tcia", []), ("preprocess.import_tcia", []),
        ("train", ["ts1"]), ("train", ["predict"]),
        ("evaluate", ["report"]), ("evaluate", ["predict"]), ("evaluate", ["experiments"]),
        *[("cache", [name]) for name in ("ls", "info", "verify", "diff", "export")]]


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("name, argv", HELP)
def test_help_exits_0_and_shows_defaults(name, argv, capsys):
    with pytest.raises(SystemExit) as stop:
        CLIS[name]([*argv, "--help"])
    assert stop.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: ") and "--print-config" in out and "--debug" in out
    assert "exit status: 0 done; 1 the work failed" in out
    assert "(default: " in out or "(required" in out


@pytest.mark.parametrize("name", ["train", "evaluate", "cache"])
def test_groups_list_their_commands(name, capsys):
    assert CLIS[name](["--help"]) == 0
    assert "commands:" in capsys.readouterr().out


@pytest.mark.parametrize("name, argv, message", [
    ("train", [], "stage is required"),
    ("train", ["ts1", "--fold", "7"], r"fold=7 is not in 0\.\.4"),
    ("train", ["ts4"], "invalid choice: 'ts4'"),
    ("train", ["ts1", "--dataset", "nowhere"], "unknown dataset 'nowhere'"),
    ("train", ["predict"], "--run is required"),
    ("preprocess", ["--dataset", "nowhere"], "unknown dataset 'nowhere'"),
    ("preprocess", ["--shard", "auto"], "--shard auto: SLURM_ARRAY_TASK_ID"),
    ("preprocess", ["--workers"], "argument --workers: expected one argument"),
    ("evaluate", [], "--run is required"),
    ("evaluate", ["predict"], "--ct, --pet.* and --model are required"),
    ("evaluate", ["predict", "--ct", "ct.nii.gz"], "--pet.* and --model are required"),
    ("evaluate", ["experiments", "--device", "tpu"], "invalid choice: 'tpu'"),
    ("cache", [], "usage: python -m cache"),
    ("cache", ["verify"], "verify: give cache files or folders, or --dataset NAME"),
    ("cache", ["bake"], "unknown command 'bake'"),
    ("preprocess.register", [], "--atlas-bank, --ct, --totalseg and --out are required"),
    ("preprocess.phantom", ["--patients", "0"], "patients must be >= 1"),
    ("preprocess.suv", [], "dicom_dir and out are required"),
    ("preprocess.phantom.calibrate", ["--patients", "4"], "--patients 4 is too few for 5 folds"),
    ("preprocess.import_tcia", [], "are required"),
])
def test_user_errors_are_one_line_with_exit_2(name, argv, message, capsys, monkeypatch):
    monkeypatch.delenv("SLURM_ARRAY_TASK_ID", raising=False)
    status = CLIS[name](argv)
    if name == "cache" and not argv:  # the group's usage, on stdout
        assert status == 2 and message in capsys.readouterr().out
        return
    assert status == 2
    assert re.search(message, one_error_line(capsys))


@pytest.mark.parametrize("name, argv, message", [
    ("evaluate", ["--run", "no/such/run"], "no/such/run"),
    ("cache", ["info", "no/such/file.h5"], "no/such/file.h5"),
    ("preprocess.suv", ["no/such/folder", "suv.nii.gz"], "no/such/folder"),
])
def test_failed_work_is_one_line_with_exit_1(name, argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert CLIS[name](argv) == 1
    assert message in one_error_line(capsys)


def test_no_arguments_means_the_demo_dataset_with_its_own_settings():
    settings, build, suv = preprocess.__main__.COMMAND.parse([])
    assert settings.dataset == "demo" and build.spacing_mm == 2.0 and build.registration_preset == "demo"
    (train_settings,) = train.__main__.COMMAND.parse(["ts1"])
    assert train_settings.dataset == "demo" and train_settings.patch_size_vox == 32


def test_a_boolean_the_demo_turns_on_can_be_turned_off():
    (settings,) = train.__main__.COMMAND.parse(["ts1", "--no-station-mask-channel", "--norm", "instance"])
    assert settings.station_mask_channel is False and settings.norm == "instance"
    (settings,) = train.__main__.COMMAND.parse(["ts1", "--no-augment", "--no-amp", "--no-progress"])
    assert (settings.augment, settings.amp, settings.progress) == (False, False, False)


def test_help_shows_the_datasets_effective_defaults(capsys):
    with pytest.raises(SystemExit):
        train.__main__.cli(["ts2", "--dataset", "demo", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 32, from dataset 'demo' [train])" in text  # patch_size_vox
    assert "(default: 16, from configs/train/ts2.toml)" in text  # batch_size
    assert "--station-mask-channel, --no-station-mask-channel" in text
    with pytest.raises(SystemExit):
        preprocess.__main__.cli(["--help"])
    assert "(default: 2.0, from dataset 'demo' [preprocess])" in " ".join(capsys.readouterr().out.split())


def test_shard_auto_reads_the_slurm_array(monkeypatch):
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "4")
    monkeypatch.setenv("SLURM_ARRAY_TASK_MIN", "1")
    settings, _, _ = preprocess.__main__.COMMAND.parse(["--shard", "auto"])
    assert settings.shard == "3/4"


def test_python_m_prints_one_line_and_exit_2_without_a_traceback():
    result = subprocess.run([sys.executable, "-m", "train", "ts1", "--fold", "7"], cwd=REPO, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == "error: TrainSettings: fold=7 is not in 0..4\n"


def test_console_scripts_run_the_same_commands():
    scripts = {e.name: e.value for d in importlib.metadata.distributions() for e in d.entry_points
               if e.group == "console_scripts" and e.name.startswith("lnstage-")}  # a stale egg-info has none
    expected = {"lnstage-preprocess": "preprocess.__main__:cli", "lnstage-train": "train.__main__:cli",
                "lnstage-evaluate": "evaluate.__main__:cli", "lnstage-cache": "cache.__main__:cli"}
    assert scripts.items() >= expected.items()
    result = subprocess.run([str(Path(sys.executable).parent / "lnstage-evaluate"), "predict"], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert re.match(r"error: --ct, --pet.* and --model are required; lnstage-evaluate predict --help", result.stderr)
