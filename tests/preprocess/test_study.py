"""`python -m preprocess --dataset STUDY` runs each member of the study in turn (here `--check`)."""

import pytest

from cache.settings import SettingsError
from preprocess.__main__ import main
from tests.preprocess.test_check_manifest import row, write_dataset


def _study(tmp_path, second_rows):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = write_dataset(tmp_path / "a", [row("1")])
    second = write_dataset(tmp_path / "b", second_rows)
    second = second.rename(tmp_path / "b" / "other.toml")
    study = tmp_path / "pair.toml"
    study.write_text(f'members = ["{first}", "{second}"]\n')
    return study


def test_each_member_is_checked_and_the_worst_status_counts(tmp_path, capsys):
    assert main(["--dataset", str(_study(tmp_path, [row("1"), row("2")])), "--check"]) == 0
    out = capsys.readouterr().out
    assert "1 valid row(s), 0 problem(s)" in out and "2 valid row(s), 0 problem(s)" in out


def test_a_bad_member_fails_the_study_and_root_is_refused(tmp_path, capsys):
    study = _study(tmp_path, [row("1", tumor_side="Q")])
    assert main(["--dataset", str(study), "--check"]) == 1
    assert "column 'tumor_side': 'Q'" in capsys.readouterr().err
    with pytest.raises(SettingsError, match="--root names one dataset's root, study 'pair' has 2 members"):
        main(["--dataset", str(study), "--root", str(tmp_path), "--check"])
