import json

import pytest

from cache.manifest import read_manifest, write_manifest
from train.folds import FoldError, load_or_make_folds, patient_labels, strata

STATIONS_BY_STAGE = {0: "", 1: "10R", 2: "4R;7", 3: "4L"}


def cohort_rows(tmp_path, n_patients=40, change=None):
    rows = []
    for i in range(n_patients):
        n = [0, 0, 0, 1, 2, 2, 3, 0][i % 8]
        stations = STATIONS_BY_STAGE[n] if i % 5 else ("4R" if n == 2 else STATIONS_BY_STAGE[n])
        rows.append({"patient_id": f"P{i:03d}", "scan_id": f"S{i:03d}", "ct": "ct.nii.gz", "pet": "pet.nii.gz",
                     "tumor_side": "R", "n_clinical": str(n), "stations_clinical": stations})
    rows.append({**rows[0], "scan_id": "S999"})  # a second scan of patient P000
    if change:
        change(rows)
    path = tmp_path / "manifest.csv"
    write_manifest(path, rows)
    manifest = read_manifest(path, tmp_path, check_files=False)
    manifest.raise_issues()
    return list(manifest.rows)


def test_folds_are_patient_disjoint_cover_everyone_and_keep_strata_in_every_test_fold(tmp_path):
    rows = cohort_rows(tmp_path)
    folds = load_or_make_folds(tmp_path / "folds.json", rows, "cN", 5, 0.2, 0)
    patients = {r.patient_id for r in rows}
    assert sorted(p for f in folds for p in f.test) == sorted(patients)
    for fold in folds:
        parts = [set(fold.train), set(fold.val), set(fold.test)]
        assert sum(len(p) for p in parts) == len(patients) and set().union(*parts) == patients
        assert len(fold.val) == round(0.2 * (len(patients) - len(fold.test)))
    labels = patient_labels(rows, "cN")
    n3 = {p for p, (n, _) in labels.items() if n == 3}
    assert all(set(f.test) & n3 for f in folds)  # 5 N3 patients: one per test fold


def test_fold_file_is_stable_across_calls(tmp_path):
    rows = cohort_rows(tmp_path)
    first = load_or_make_folds(tmp_path / "folds.json", rows, "cN", 5, 0.2, 0)
    text = (tmp_path / "folds.json").read_text()
    again = load_or_make_folds(tmp_path / "folds.json", list(reversed(rows)), "cN", 5, 0.2, 0)
    assert first == again and (tmp_path / "folds.json").read_text() == text
    (tmp_path / "folds.json").unlink()
    assert load_or_make_folds(tmp_path / "folds.json", rows, "cN", 5, 0.2, 0) == first


def test_rare_strata_are_merged_so_each_holds_at_least_n_folds(tmp_path):
    labels = {f"A{i}": (0, 0) for i in range(20)}
    labels |= {f"B{i}": (2, 1 + i % 4) for i in range(9)}  # counts 1..4, 2-3 patients each
    labels |= {f"C{i}": (1, 1) for i in range(2)} | {f"D{i}": (3, 1) for i in range(2)}
    result = strata(labels, 5)
    sizes = {name: list(result.values()).count(name) for name in set(result.values())}
    # N2 counts 4, 3, 2 close a bin of 6; the 3 patients with 1 positive station join it (remainder rule);
    # N1 and N3 (2 each) pool into "rare" (4 < 5), which joins the largest stratum
    assert sizes == {"N0_k0+": 24, "N2_k1+": 9}
    assert result["C0"] == result["D0"] == "N0_k0+"

    labels |= {f"E{i}": (1, 1) for i in range(2)}
    assert strata(labels, 5)["C0"] == "rare"  # now 4 N1 + 2 N3 = 6 rare patients: a stratum of their own


def test_changed_manifest_is_refused_with_the_fix(tmp_path):
    path = tmp_path / "folds.json"
    load_or_make_folds(path, cohort_rows(tmp_path), "cN", 5, 0.2, 0)

    def relabel(rows):
        rows[3]["n_clinical"], rows[3]["stations_clinical"] = "3", "4L"

    with pytest.raises(FoldError, match="changed labels.*P003.*delete"):
        load_or_make_folds(path, cohort_rows(tmp_path, change=relabel), "cN", 5, 0.2, 0)
    with pytest.raises(FoldError, match="new patients: P040"):
        load_or_make_folds(path, cohort_rows(tmp_path, n_patients=41), "cN", 5, 0.2, 0)
    with pytest.raises(FoldError, match="n_folds=5"):
        load_or_make_folds(path, cohort_rows(tmp_path), "cN", 4, 0.2, 0)
    assert json.loads(path.read_text())["merge_rule"]


def test_too_few_patients_is_an_error(tmp_path):
    with pytest.raises(FoldError, match="2 patient"):
        load_or_make_folds(tmp_path / "f.json", cohort_rows(tmp_path, n_patients=2), "cN", 5, 0.2, 0)


def _member(tmp_path, name, n_patients):
    """A dataset config whose manifest (cohort_rows) lies in its own folder."""
    from cache.dataset import DatasetConfig

    folder = tmp_path / name
    folder.mkdir()
    cohort_rows(folder, n_patients=n_patients)
    return DatasetConfig(name=name, root=str(folder))


def _study_folds(tmp_path, members):
    from cache.dataset import Study, study_rows
    from train.folds import load_or_make_study_folds

    study = Study("pool", tuple(members), namespaced=True)
    return load_or_make_study_folds(tmp_path / "folds.json", study, study_rows(study), 5, 0.2, 0, log=lambda _: None)


def test_study_folds_are_patient_disjoint_across_members_and_stable_when_a_member_is_appended(tmp_path):
    a, b = _member(tmp_path, "A", 40), _member(tmp_path, "B", 25)
    first = _study_folds(tmp_path, [a])
    both = _study_folds(tmp_path, [a, b])
    pool = {f"A/P{i:03d}" for i in range(40)} | {f"B/P{i:03d}" for i in range(25)}
    assert sorted(p for f in both for p in f.test) == sorted(pool)  # both P000s, each tested exactly once
    for fold in both:
        parts = [set(fold.train), set(fold.val), set(fold.test)]
        assert sum(map(len, parts)) == len(pool) and set().union(*parts) == pool
    for old, new in zip(first, both, strict=True):  # A's patients keep their part of every fold
        for part in ("train", "val", "test"):
            assert {p for p in getattr(new, part) if p.startswith("A/")} == set(getattr(old, part))
    # a member's folds are its folds as a single dataset, ids namespaced
    (tmp_path / "single.json").unlink(missing_ok=True)
    alone = load_or_make_folds(tmp_path / "single.json", cohort_rows(tmp_path / "A"), "cN", 5, 0.2, 0)
    assert [tuple(f"A/{p}" for p in f.test) for f in alone] == [f.test for f in first]
    assert _study_folds(tmp_path, [a, b]) == both  # read back, unchanged


def test_study_folds_refuse_a_changed_member_manifest_and_a_dropped_member(tmp_path):
    a, b = _member(tmp_path, "A", 40), _member(tmp_path, "B", 25)
    _study_folds(tmp_path, [a, b])

    def relabel(rows):
        rows[3]["n_clinical"], rows[3]["stations_clinical"] = "3", "4L"

    cohort_rows(tmp_path / "B", n_patients=25, change=relabel)
    with pytest.raises(FoldError, match="member B .*changed labels.*P003"):
        _study_folds(tmp_path, [a, b])
    with pytest.raises(FoldError, match="member.*B of the stored folds are no longer in study"):
        _study_folds(tmp_path, [a])
    (tmp_path / "folds.json").unlink()
    with pytest.raises(FoldError, match="study 'pool', member C: 2 patient"):
        _study_folds(tmp_path, [a, _member(tmp_path, "C", 2)])
