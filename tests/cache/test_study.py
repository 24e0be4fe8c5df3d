"""Studies (cache.dataset): members loaded and checked, stage tables merged, mistakes refused with the fix."""

import pytest

from cache.build_settings import BuildSettings, build_settings_for
from cache.dataset import load_study, stage_overrides
from cache.settings import SettingsError


def _config(tmp_path, name, extra=""):
    path = tmp_path / f"{name}.toml"
    path.write_text(f'root = "{tmp_path / name}"\n{extra}')
    return path


def _study(tmp_path, *members, extra=""):
    path = tmp_path / "pool.toml"
    path.write_text("members = [" + ", ".join(f'"{m}"' for m in members) + "]\n" + extra)
    return path


def test_a_study_loads_its_members_and_namespaces_ids_a_dataset_does_not(tmp_path):
    a = _config(tmp_path, "a", '[train]\nlr = 0.001\nbatch_size = 4\n[train.ts2]\nhead_lr = 0.01\nmax_epochs = 20\n')
    b = _config(tmp_path, "b", "station_labels = false\n")
    study = load_study(str(_study(tmp_path, a, b, extra="[train]\nbatch_size = 8\n[train.ts2]\nmax_epochs = 10\n")))
    assert study.name == "pool" and [m.name for m in study.members] == ["a", "b"] and study.namespaced
    assert [m.station_labels for m in study.members] == [True, False]
    assert study.patient_id(study.members[1], "P1") == "b/P1"
    single = load_study(str(a))
    assert not single.namespaced and single.patient_id(single.members[0], "P1") == "P1"
    # [train]: the first member's table, updated by the study's own, a stage's sub-table key by key
    assert stage_overrides(str(tmp_path / "pool.toml"), "train") == {
        "lr": 0.001, "batch_size": 8, "ts2": {"head_lr": 0.01, "max_epochs": 10}}
    assert load_study("paper").members[2].name == "LungPETCTDx"  # the shipped study


def test_members_must_agree_and_a_study_has_no_root_or_preprocess_table(tmp_path):
    a = _config(tmp_path, "a")
    with pytest.raises(SettingsError, match="differ in label_column"):
        load_study(str(_study(tmp_path, a, _config(tmp_path, "b", 'label_column = "pN"\n'))))
    with pytest.raises(SettingsError, match="different settings"):
        build_settings_for(str(_study(tmp_path, a, _config(tmp_path, "c", "[preprocess]\nspacing_mm = 2.0\n"))))
    study = _study(tmp_path, a, _config(tmp_path, "d"))
    assert build_settings_for(str(study)) == BuildSettings()
    with pytest.raises(SettingsError, match="--root names one dataset's root"):
        load_study(str(study), root=str(tmp_path))
    with pytest.raises(SettingsError, match=r"no \[preprocess\] table; each member's own applies"):
        stage_overrides(str(study), "preprocess")
    with pytest.raises(SettingsError, match="lists a dataset twice"):
        load_study(str(_study(tmp_path, a, a)))
    (tmp_path / "pool.toml").write_text('members = ["a"]\nroot = "x"\n')
    with pytest.raises(SettingsError, match="unknown key.*root"):
        load_study(str(tmp_path / "pool.toml"))


def test_cache_verify_of_a_study_checks_every_member(tmp_path, capsys):
    from cache.commands import verify
    from cache.manifest import write_manifest

    members = []
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        write_manifest(tmp_path / name / "manifest.csv", [{"patient_id": "p1", "scan_id": f"s{name}", "ct": "ct.nii",
                                                            "pet": "pet.nii", "n_clinical": "0"}])
        members.append(_config(tmp_path, name))
    study = _study(tmp_path, *members)
    assert verify([], str(study), None, None, False) == 1  # no cache file in either member
    err = capsys.readouterr().err
    assert "MISSING p1__sa" in err and "MISSING p1__sb" in err
    with pytest.raises(SettingsError, match="verify takes no files or --root"):
        verify([str(tmp_path)], str(study), None, None, False)
