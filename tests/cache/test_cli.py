"""The command-line runner: precedence and its sources in --help, --x/--no-x, --print-config fed back, errors."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Literal

import pytest

from cache.cli import Command, CommandGroup, Preset, exit_status, field_sections
from cache.run_log import Progress


@dataclass(frozen=True)
class Toy:
    """A toy command's settings."""

    dataset: str = field(default="a", metadata={"help": "dataset name"})
    out: str = field(default="", metadata={"help": "output folder"})
    # model
    width: int = field(default=8, metadata={"help": "channels of the first block"})
    sizes: tuple[int, ...] = field(default=(1, 2), metadata={"help": "block sizes, 100% sure"})
    augment: bool = field(default=True, metadata={"help": "random flips of the training patches"})
    norm: Literal["instance", "batch"] = field(default="instance", metadata={"help": "normalisation"})
    weight_kg: float | None = field(default=None, metadata={"help": "patient weight"})

    def __post_init__(self) -> None:
        if self.width < 1:
            raise ValueError(f"width={self.width} must be at least 1")


PRESETS = {"a": {}, "b": {"width": 16, "augment": False}}


def presets(given):
    return [Preset(f"dataset {given.get('dataset', 'a')!r}", Toy, PRESETS[given.get("dataset", "a")])]


def command(log_dir=None, ran=None):
    def work(settings: Toy) -> int:
        if ran is not None:
            ran.append(settings)
        warnings.warn("a warning the log keeps", stacklevel=1)
        return 0 if settings.width < 100 else 1

    log_file = (lambda s: log_dir / s.out / "toy.log") if log_dir else None
    return Command("python -m toy", "Do a toy thing.", (Toy,), work, presets=presets, required=("out",),
                   log_file=log_file)


def test_precedence_default_preset_config_flag(tmp_path):
    assert command().parse(["--out", "x"]) == (Toy(out="x"),)
    assert command().parse(["--out", "x", "--dataset", "b"]) == (Toy(dataset="b", out="x", width=16, augment=False),)
    config = tmp_path / "run.toml"
    config.write_text('[Toy]\ndataset = "b"\nsizes = [3]\n')
    parsed = command().parse(["--out", "x", "--config", str(config), "--augment", "--width", "4"])
    assert parsed == (Toy(dataset="b", out="x", width=4, sizes=(3,), augment=True),)


def test_a_boolean_a_preset_turned_off_can_be_turned_on_and_back(capsys):
    assert command().parse(["--out", "x", "--dataset", "b", "--augment"])[0].augment is True
    assert command().parse(["--out", "x", "--no-augment"])[0].augment is False
    with pytest.raises(SystemExit):
        command().parse(["--help"])
    assert "--augment, --no-augment" in capsys.readouterr().out


def test_help_shows_effective_defaults_with_their_source_grouped_by_section(capsys):
    with pytest.raises(SystemExit):
        command().parse(["--dataset", "b", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "channels of the first block (default: 16, from dataset 'b')" in text
    assert "random flips of the training patches (default: off, from dataset 'b')" in text
    assert "block sizes, 100% sure (default: 1 2)" in text
    assert "output folder (required)" in text
    assert "Toy: model" in text and "usage: python -m toy --out OUT [flags]" in text
    assert field_sections(Toy) == [("Toy", ["dataset", "out"]),
                                   ("Toy: model", ["width", "sizes", "augment", "norm", "weight_kg"])]


def test_print_config_fed_back_gives_the_same_settings(tmp_path, capsys):
    argv = ["--out", "x", "--dataset", "b", "--sizes", "4", "5", "--norm", "batch", "--weight-kg", "70.5"]
    assert command().run([*argv, "--print-config"]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "run.toml").write_text(printed)
    assert command().parse(["--config", str(tmp_path / "run.toml")]) == command().parse(argv)
    assert command().run(["--config", str(tmp_path / "run.toml"), "--print-config"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == printed.splitlines()[1:]  # the first line is the command


@pytest.mark.parametrize("argv, message", [
    ([], "--out is required: output folder"),
    (["--out", "x", "--norm", "layer"], "argument --norm: invalid choice: 'layer'"),
    (["--out", "x", "--width", "wide"], "argument --width: invalid int value: 'wide'"),
    (["--out", "x", "--width", "0"], "Toy: width=0 must be at least 1"),
    (["--out", "x", "--colour", "red"], "unrecognized arguments: --colour red"),
])
def test_usage_errors_are_one_line_and_exit_2(argv, message, capsys):
    assert exit_status(command().run, argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and err.count("\n") == 1 and "Traceback" not in err


def test_config_file_with_an_unknown_table_or_key_is_refused(tmp_path, capsys):
    config = tmp_path / "run.toml"
    config.write_text("[Other]\nwidth = 3\n")
    assert exit_status(command().run, ["--out", "x", "--config", str(config)]) == 2
    assert "unknown table(s) Other; this command reads Toy" in capsys.readouterr().err
    config.write_text("[Toy]\nwidht = 3\n")
    assert exit_status(command().run, ["--out", "x", "--config", str(config)]) == 2
    assert "unknown setting(s) widht" in capsys.readouterr().err


def test_failed_work_exits_1_with_one_line_and_the_traceback_only_with_debug(capsys):
    def broken(settings: Toy) -> int:
        return {}["missing key"]

    crash = Command("python -m toy", "Crash.", (Toy,), broken)
    assert exit_status(crash.run, []) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "rerun with --debug" in err
    with pytest.raises(KeyError):
        exit_status(crash.run, ["--debug"])


def test_log_file_holds_command_settings_output_warnings_and_status(tmp_path, capsys):
    ran = []
    assert command(tmp_path, ran).run(["--out", "o", "--width", "3"]) == 0
    log = (tmp_path / "o" / "toy.log").read_text()
    assert "python -m toy --out o --width 3" in log and "width = 3" in log and "[Toy]" in log
    assert "a warning the log keeps" in log and "=== exit 0;" in log and "peak memory" in log
    assert ran == [Toy(out="o", width=3)]
    assert command(tmp_path).run(["--out", "o", "--width", "100"]) == 1  # appended, a second header
    log = (tmp_path / "o" / "toy.log").read_text()
    assert log.count(": python -m toy --out o") == 2 and "=== exit 1;" in log


def test_log_file_records_the_traceback_of_a_failure(tmp_path, capsys):
    def broken(settings: Toy) -> int:
        raise RuntimeError("the disk is full")

    crash = Command("python -m toy", "Crash.", (Toy,), broken, log_file=lambda s: tmp_path / "crash.log")
    assert exit_status(crash.run, []) == 1
    log = (tmp_path / "crash.log").read_text()
    assert "Traceback" in log and "=== failed: RuntimeError: the disk is full" in log


def test_a_log_folder_that_cannot_be_written_is_one_line_before_any_work(tmp_path, capsys):
    (tmp_path / "taken").write_text("a file where the output folder should be")
    ran = []
    blocked = Command("python -m toy", "Do a toy thing.", (Toy,), lambda s: ran.append(s) or 0,
                      log_file=lambda s: tmp_path / "taken" / "toy.log")
    assert exit_status(blocked.run, []) == 1 and ran == []
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "toy.log: the run's log file cannot be written" in err
    assert "choose another output folder" in err and "Traceback" not in err


def test_group_dispatches_defaults_and_names_an_unknown_command(capsys):
    ran = []
    group = CommandGroup("python -m toys", "Toys.", {"make": (command(ran=ran), "make a toy"),
                                                     "other": (command(), "another")}, default="make")
    assert group.run(["--out", "x"]) == 0 and group.run(["make", "--out", "y"]) == 0
    assert [s.out for s in ran] == ["x", "y"]
    assert group.run(["--help"]) == 0 and "make   make a toy (default)" in capsys.readouterr().out
    plain = CommandGroup("python -m toys", "Toys.", {"make": (command(), "make a toy")})
    assert exit_status(plain.run, []) == 2
    assert exit_status(plain.run, ["bake"]) == 2 and "unknown command 'bake'" in capsys.readouterr().err


def test_progress_prints_a_line_per_tenth_when_not_a_terminal(capsys):
    assert list(Progress(range(20), "scans", None, "scan", None, True)) == list(range(20))
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 10 and lines[0].startswith("scans: 2/20 scan in") and lines[-1].startswith("scans: 20/20")
    bar = Progress(None, "epoch 1", 3, "batch", 1, enabled=False)
    bar.update(3)
    bar.close()
    assert capsys.readouterr().out == ""
