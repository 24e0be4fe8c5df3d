"""`python -m preprocess --dataset NAME --check` validates a manifest and summarises it, processing nothing."""

from cache.manifest import write_manifest
from preprocess.__main__ import main


def write_dataset(tmp_path, rows):
    for name in ("ct.nii.gz", "pet.nii.gz"):
        (tmp_path / name).write_bytes(b"x")
    write_manifest(tmp_path / "manifest.csv", rows)
    config = tmp_path / "mini.toml"
    config.write_text(f'root = "{tmp_path}"\nmanifest = "manifest.csv"\n')
    return config


def row(scan_id, **values):
    base = {"patient_id": f"p{scan_id}", "scan_id": scan_id, "ct": "ct.nii.gz", "pet": "pet.nii.gz",
            "tumor_side": "L", "n_clinical": "1", "stations_clinical": "10L"}
    return {**base, **values}


def test_check_prints_summary_and_passes(tmp_path, capsys):
    config = write_dataset(tmp_path, [row("1"), row("2", n_clinical="0", stations_clinical="")])
    assert main(["--dataset", str(config), "--check"]) == 0
    out = capsys.readouterr().out
    assert "2 valid row(s), 0 problem(s)" in out
    assert "n_clinical: N0 1, N1 1" in out
    assert "10L 1" in out
    assert not (tmp_path / "cache").exists()


def test_check_reports_every_bad_row_and_fails(tmp_path, capsys):
    config = write_dataset(tmp_path, [row("1", tumor_side="Q"), row("2", n_clinical="7"), row("3")])
    assert main(["--dataset", str(config), "--check"]) == 1
    err = capsys.readouterr().err
    assert "row 2, column 'tumor_side': 'Q'" in err
    assert "row 3, column 'n_clinical': '7'" in err


def test_root_override_by_environment(tmp_path, capsys, monkeypatch):
    config = write_dataset(tmp_path, [row("1")])
    config.write_text('root = "/nonexistent"\n')
    monkeypatch.setenv("LNSTAGE_ROOT_MINI", str(tmp_path))
    assert main(["--dataset", str(config), "--check"]) == 0


def test_check_refuses_ids_that_leave_the_cache_folder_and_names_the_row(tmp_path, capsys):
    config = write_dataset(tmp_path, [row("1"), row("2", patient_id="../../x"), row("3", n_clinical="²")])
    assert main(["--dataset", str(config), "--check"]) == 1
    err = capsys.readouterr().err
    assert "row 3, column 'patient_id': '../../x' is not a valid id" in err
    assert "row 4, column 'n_clinical': '²'" in err
