"""`python -m cache`: verify catches damage and names it, lists missing and stale scans; ls, info, diff, export."""

from dataclasses import replace

import h5py
import pytest

from cache import schema
from cache.__main__ import main
from cache.build_settings import BuildSettings
from cache.checksums import input_digests
from cache.manifest import read_manifest, write_manifest
from cache.writer import ScanLabels, write_scan
from tests.cache.conftest import tiny_record


def flip_byte(path, dataset, position=100):
    with h5py.File(path, "r") as f:
        offset = f[dataset].id.get_offset()
    with open(path, "r+b") as raw:
        raw.seek(offset + position)
        value = raw.read(1)[0]
        raw.seek(offset + position)
        raw.write(bytes([value ^ 0x01]))


def test_verify_passes_sound_files(cache_file, capsys):
    assert main(["verify", str(cache_file.parent)]) == 0
    assert "1 of 1 file(s) sound" in capsys.readouterr().out


def test_verify_names_the_file_and_dataset_of_one_flipped_byte(cache_file, tmp_path, capsys):
    other = write_scan(cache_file.parent / "p2__s1.h5", tiny_record("p2", "s1", seed=5))
    flip_byte(cache_file, schema.SUV)
    assert main(["verify", str(cache_file), str(other)]) == 1
    captured = capsys.readouterr()
    assert f"BAD {cache_file}: dataset 'image/suv' does not match its checksum" in captured.err
    assert str(other) not in captured.err and "1 of 2 file(s) sound" in captured.out


def test_verify_names_a_file_of_another_schema(cache_file, capsys):
    with h5py.File(cache_file, "r+") as f:
        f.attrs[schema.SCHEMA_VERSION_ATTR] = 0
    assert main(["verify", str(cache_file)]) == 1
    assert "schema version 0, this tool reads version 2" in capsys.readouterr().err


def make_dataset(tmp_path):
    """A dataset of three scans whose cache holds one current file, one stale (other spacing), one missing."""
    root = tmp_path / "data"
    root.mkdir()
    rows = []
    for i in range(3):
        for role in ("ct", "pet"):
            (root / f"{role}{i}.nii.gz").write_bytes(f"{role} of scan {i}".encode())
        rows.append({"patient_id": f"p{i}", "scan_id": f"s{i}", "ct": f"ct{i}.nii.gz", "pet": f"pet{i}.nii.gz",
                     "tumor_side": "R", "n_clinical": "0"})
    write_manifest(root / "manifest.csv", rows)
    config = tmp_path / "mini.toml"
    config.write_text(f'root = "{root}"\n[preprocess]\nspacing_mm = 2.0\n')
    manifest = read_manifest(root / "manifest.csv", root)
    folder = root / "cache" / "mini"
    for row, spacing in zip(manifest.rows[:2], (2.0, 1.0), strict=True):
        record = replace(tiny_record(row.patient_id, row.scan_id), dataset="mini",
                         settings=(BuildSettings(spacing_mm=spacing),), inputs=input_digests(row),
                         labels=ScanLabels.from_manifest_row(row))
        write_scan(folder / f"{row.key}.h5", record)
    return config, root, folder


def test_verify_dataset_lists_missing_and_stale_scans(tmp_path, capsys):
    config, root, folder = make_dataset(tmp_path)
    assert main(["verify", "--dataset", str(config)]) == 1
    err = capsys.readouterr().err
    assert "MISSING p2__s2" in err
    assert "STALE p1__s1: settings differ: BuildSettings.spacing_mm: file 1.0, current 2.0" in err
    assert "p0__s0" not in err


def test_verify_dataset_sees_changed_input_content(tmp_path, capsys):
    config, root, folder = make_dataset(tmp_path)
    (root / "pet0.nii.gz").write_bytes(b"another PET")
    assert main(["verify", "--dataset", str(config)]) == 1
    assert "STALE p0__s0: input content changed: pet" in capsys.readouterr().err
    assert main(["verify", "--dataset", str(config), "--skip-inputs"]) == 1
    assert "p0__s0" not in capsys.readouterr().err


def test_ls_info_and_diff(tmp_path, capsys):
    config, root, folder = make_dataset(tmp_path)
    assert main(["ls", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "p0__s0" in out and "p1__s1" in out
    assert main(["info", str(folder / "p0__s0.h5")]) == 0
    assert "spacing_mm=2.0" in capsys.readouterr().out
    assert main(["diff", str(folder / "p0__s0.h5"), str(folder / "p1__s1.h5")]) == 1
    out = capsys.readouterr().out
    assert "setting BuildSettings.spacing_mm: A 2.0, B 1.0" in out
    assert "input ct: content differs" in out


def test_export_compressed_copy_verifies_and_diffs_equal(cache_file, tmp_path, capsys):
    assert main(["export", str(cache_file.parent), "--out", str(tmp_path / "out")]) == 0
    copy = tmp_path / "out" / cache_file.name
    with h5py.File(copy, "r") as f:
        assert f[schema.CT].compression == "gzip"
    assert main(["verify", str(copy)]) == 0
    assert main(["diff", str(cache_file), str(copy)]) == 0
    assert "no differences" in capsys.readouterr().out


@pytest.mark.parametrize("obj, attr, value, named", [
    (schema.CT, "spacing", lambda old: [2.0, 2.0, 2.5], "attributes of 'image/ct'"),
    (schema.LABELS_GROUP, schema.N_CLINICAL_ATTR, lambda old: (old + 1) % 4, "attributes of 'labels'"),
    ("stations/7", schema.SUV_MAX_ATTR, lambda old: old + 0.5, "attributes of 'stations/7'"),
    ("/", schema.RULE_SET_ATTR, lambda old: "other", "attributes of '/'"),
])
def test_verify_names_an_edited_attribute(cache_file, capsys, obj, attr, value, named):
    with h5py.File(cache_file, "r+") as f:
        f[obj].attrs[attr] = value(f[obj].attrs[attr])
    assert main(["verify", str(cache_file)]) == 1
    assert f"BAD {cache_file}: {named} do not match their checksum" in capsys.readouterr().err


@pytest.mark.parametrize("attr, value, message", [
    (schema.SCHEMA_VERSION_ATTR, "two", "'schema_version' is 'two', not a number"),
    (schema.SETTINGS_ATTR, "{not json", "unreadable metadata (JSONDecodeError"),
])
def test_verify_reports_an_unparsable_file_and_checks_the_others(cache_file, capsys, attr, value, message):
    other = write_scan(cache_file.parent / "p2__s1.h5", tiny_record("p2", "s1", seed=5))
    with h5py.File(cache_file, "r+") as f:
        f.attrs[attr] = value
    assert main(["verify", str(cache_file), str(other)]) == 1
    captured = capsys.readouterr()
    assert f"BAD {cache_file}: {message}" in captured.err and "rebuild with" in captured.err
    assert "1 of 2 file(s) sound" in captured.out
