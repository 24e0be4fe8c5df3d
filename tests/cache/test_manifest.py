"""The manifest reader on real CSV files: every bad-row case is reported with its row, column and value."""

from pathlib import Path

import numpy as np
import pytest

from cache.manifest import COLUMNS, ManifestError, read_manifest, write_manifest


def good_row(tmp_path: Path, scan_id: str, **values) -> dict:
    for name in ("ct", "pet"):
        (tmp_path / f"{scan_id}_{name}.nii.gz").write_bytes(b"x")
    row = {"patient_id": f"p-{scan_id}", "scan_id": scan_id, "ct": f"{scan_id}_ct.nii.gz",
           "pet": f"{scan_id}_pet.nii.gz", "tumor_side": "R", "n_clinical": "2", "stations_clinical": "4R;7"}
    row.update(values)
    return row


def read(tmp_path: Path, rows: list[dict]):
    path = tmp_path / "manifest.csv"
    write_manifest(path, rows)
    return read_manifest(path, tmp_path)


def test_good_rows_parse_with_labels(tmp_path):
    manifest = read(tmp_path, [good_row(tmp_path, "a"), good_row(tmp_path, "b", n_clinical="0", stations_clinical=""),
                               good_row(tmp_path, "c", n_clinical="3", stations_clinical="")])
    assert not manifest.issues
    a, b, c = manifest.rows
    assert a.stations_clinical == ("4R", "7") and a.n_stage("cN") == 2 and a.ct == tmp_path / "a_ct.nii.gz"
    assert a.station_status("cN").tolist().count(1) == 2
    assert np.all(b.station_status("cN") == 0)  # N0: every station benign
    assert np.all(c.station_status("cN") == -1)  # N3 without a list: unknown
    assert a.key == "p-a__a"


@pytest.mark.parametrize(
    "values, column, value_text",
    [
        ({"stations_clinical": "4R;7X"}, "stations_clinical", "4R;7X"),
        ({"n_clinical": "5", "stations_clinical": ""}, "n_clinical", "5"),
        ({"tumor_side": "left"}, "tumor_side", "left"),
        ({"pet": "missing_pet.nii.gz"}, "pet", "missing_pet.nii.gz"),
        ({"n_clinical": "1"}, "stations_clinical", "4R;7"),  # the stations give N2
        ({"patient_id": ""}, "patient_id", ""),
    ],
)
def test_each_bad_value_is_named(tmp_path, values, column, value_text):
    manifest = read(tmp_path, [good_row(tmp_path, "ok"), good_row(tmp_path, "bad", **values)])
    assert [r.scan_id for r in manifest.rows] == ["ok"]  # the good row still runs
    assert len(manifest.issues) == 1
    issue = manifest.issues[0]
    assert (issue.row, issue.column, issue.value) == (3, column, value_text)
    assert f"row 3, column {column!r}" in str(issue)


def test_duplicate_scan_id(tmp_path):
    manifest = read(tmp_path, [good_row(tmp_path, "a"), good_row(tmp_path, "a", patient_id="p-x")])
    assert [(i.row, i.column, i.value) for i in manifest.issues] == [(3, "scan_id", "a")]
    assert "duplicate of row 2" in str(manifest.issues[0])


def test_missing_column(tmp_path):
    path = tmp_path / "manifest.csv"
    path.write_text(",".join(c for c in COLUMNS if c != "tumor_side") + "\n")
    manifest = read_manifest(path, tmp_path)
    assert [(i.row, i.column) for i in manifest.issues] == [(1, "tumor_side")]
    with pytest.raises(ManifestError, match="column 'tumor_side'.*missing"):
        manifest.raise_issues()


def test_all_problems_reported_not_just_the_first(tmp_path):
    rows = [good_row(tmp_path, "a", tumor_side="X", n_clinical="9", stations_clinical="4Q")]
    manifest = read(tmp_path, rows)
    assert {i.column for i in manifest.issues} == {"tumor_side", "n_clinical", "stations_clinical"}


@pytest.mark.parametrize("column", ["patient_id", "scan_id"])
@pytest.mark.parametrize("value", ["../../x", "/abs/p", "a/b", "a__b", "_a", "a_", "a b", "dé", "x" * 65, "a:b", ".."])
def test_ids_outside_the_alphabet_are_refused(tmp_path, column, value):
    bad = {**good_row(tmp_path, "bad"), column: value}
    manifest = read(tmp_path, [good_row(tmp_path, "ok"), bad])
    assert [r.scan_id for r in manifest.rows] == ["ok"]
    assert [(i.row, i.column, i.value) for i in manifest.issues] == [(3, column, value)]
    assert "id" in manifest.issues[0].problem


def test_ids_in_the_alphabet_are_accepted(tmp_path):
    manifest = read(tmp_path, [good_row(tmp_path, "Lung_Dx-A0001.s1", patient_id="Lung_Dx-A0001"),
                               good_row(tmp_path, "b", patient_id="x" * 64)])
    assert not manifest.issues and len(manifest.rows) == 2


def test_rows_that_would_share_a_cache_file_cannot_both_pass(tmp_path):
    """`a__b,c` and `a,b__c` used to map to one file `a__b__c.h5`; ids differing only in case fold to one file."""
    manifest = read(tmp_path, [good_row(tmp_path, "c", patient_id="a__b"), good_row(tmp_path, "b__c", patient_id="a")])
    assert {(i.row, i.column) for i in manifest.issues} == {(2, "patient_id"), (3, "scan_id")}
    manifest = read(tmp_path, [good_row(tmp_path, "s1", patient_id="P1"), good_row(tmp_path, "S1", patient_id="p1")])
    assert [(i.row, i.column) for i in manifest.issues] == [(3, "scan_id")]
    assert "same cache file as row 2" in str(manifest.issues[0])


@pytest.mark.parametrize("value", ["²", "٣", "N٣", "2.0", "N 2"])
def test_n_stage_is_ascii_digits_only(tmp_path, value):
    manifest = read(tmp_path, [good_row(tmp_path, "ok"), good_row(tmp_path, "bad", n_clinical=value,
                                                                    stations_clinical="")])
    assert [(i.row, i.column, i.value) for i in manifest.issues] == [(3, "n_clinical", value)]


def test_n_stage_forms_that_are_accepted(tmp_path):
    forms = (("a", "N3"), ("b", "n1"), ("c", "0"))
    rows = [good_row(tmp_path, s, n_clinical=v, stations_clinical="") for s, v in forms]
    assert [r.n_clinical for r in read(tmp_path, rows).rows] == [3, 1, 0]
