"""python -m preprocess.import_tcia on a TCIA-like phantom download (real DICOM files, real clinical tables)."""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pydicom
import pytest

from cache.dataset import stage_overrides
from cache.manifest import read_manifest
from cache.settings import SettingsError
from preprocess.import_tcia import (
    ImportReport,
    ImportSettings,
    Series,
    TciaImportError,
    cli,
    import_tcia,
    pair_patient,
    parse_n_stage,
)
from preprocess.phantom.settings import PhantomSettings
from preprocess.phantom.tcia import CLINICAL, TREE, TciaTreeSettings, generate_tcia_cohort, stage_counts

PATIENTS = 7
MIX = (64.0, 25.0, 4.0, 9.0)


@pytest.fixture(scope="module")
def download(tmp_path_factory) -> Path:
    """7 patients (+1 not in the clinical table) at 6 mm, 3 mm CT slices, imported once by the phantom."""
    out = tmp_path_factory.mktemp("tcia") / "demo-dx"
    phantom = PhantomSettings(out=str(out), patients=PATIENTS, atlases=0, seed=3, spacing_mm=6.0, pet_spacing_mm=12.0)
    tree = TciaTreeSettings(ct_slice_mm=3.0, pet_extra_noise=0.15, n_stage_mix=MIX)
    generate_tcia_cohort(phantom, tree, settings_for(out))
    return out


def settings_for(download: Path, **changes) -> ImportSettings:
    table = stage_overrides("demo-dx", "import_tcia")
    return ImportSettings(**{**table, "root": str(download / TREE), "clinical": str(download / CLINICAL),
                             "out": str(download / "manifest.csv"), "dataset": "demo-dx", **changes})


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def clinical_n(out: Path) -> dict[str, int]:
    """DICOM PatientID -> N-stage as the phantom wrote it into its clinical table."""
    return {f"Phantom_Dx-{r['NewPatientID']}": int(r["N-Stage"].lstrip("N")) for r in read_rows(out / CLINICAL)}


def modality_behind(link: Path) -> tuple[str, str]:
    """(Modality, PatientID) of the first DICOM file of the series a manifest link leads to."""
    header = pydicom.dcmread(next(iter(sorted(link.iterdir()))), stop_before_pixels=True)
    return str(header.Modality), str(header.PatientID)


def test_manifest_pairs_ct_with_pet_and_takes_the_clinical_n_stage(download):
    report = import_tcia(settings_for(download))
    rows = read_rows(download / "manifest.csv")
    assert len(rows) == PATIENTS == len(report.rows)
    truth = clinical_n(download)
    for row in rows:
        assert re.fullmatch(r"dx-\d{4}", row["patient_id"]) and row["scan_id"] == row["patient_id"] + "-s1"
        ct, ct_patient = modality_behind(download / row["ct"])
        pet, pet_patient = modality_behind(download / row["pet"])
        assert (ct, pet) == ("CT", "PT") and ct_patient == pet_patient
        assert int(row["n_clinical"]) == truth[ct_patient]
        assert row["totalseg"] == f"totalseg/{row['scan_id']}.nii.gz"
    assert Counter(int(r["n_clinical"]) for r in rows) == Counter(
        {n: c for n, c in enumerate(stage_counts(MIX, PATIENTS)) if c})
    manifest = read_manifest(download / "manifest.csv", download)
    assert manifest.issues == () and len(manifest.rows) == PATIENTS


def test_manifest_holds_no_dicom_name_uid_date_or_folder_name(download):
    text = (download / "manifest.csv").read_text(encoding="utf-8")
    for forbidden in ("Phantom", "A000", "1.2.826.", "2024", "PET-CT", "CT 1.25mm"):
        assert forbidden not in text


def test_every_skipped_study_is_reported_with_its_reason(download):
    report = import_tcia(settings_for(download))
    skipped = sorted((folder, reason.split(":")[0]) for folder, reason in report.skipped)
    assert [(Path(f).parts[0], Path(f).name.split("-NA-")[1], r) for f, r in skipped] == sorted([
        ("Phantom_Dx-A0002", "ambiguous", "ambiguous"),
        ("Phantom_Dx-A0002", "pet-only", "PET only"),
        ("Phantom_Dx-A0002", "CT CHEST-77777", "CT only"),
        ("Phantom_Dx-A0006", "PET-CT-88888", "a later PET/CT of a patient already imported "
                                             "(studies_per_patient = first)"),
        ("Phantom_Dx-A0008", "CT CHEST-77777", "CT only"),
    ])
    assert report.no_n_stage == [("Phantom_Dx-A0008", "not in the clinical table")]
    assert Counter(p.rule for p in report.pairs) == {"same study": 6, "same frame of reference": 1, "same day": 1}
    summary = "\n".join(report.lines())
    assert "studies skipped: 5" in summary and "patients without an N-stage (left out): 1" in summary


def test_series_are_found_by_header_not_by_folder_name(download):
    """Patient A0005's PET lies in a folder named like a CT, its CT in one named 'Series A'."""
    import_tcia(settings_for(download))
    row = next(r for r in read_rows(download / "manifest.csv")
               if modality_behind(download / r["ct"])[1] == "Phantom_Dx-A0005")
    assert (download / row["pet"]).resolve().name == "1.000000-CT THORAX-33333"
    assert (download / row["ct"]).resolve().name == "Series A"


def test_all_studies_per_patient_imports_the_follow_up(download, tmp_path):
    report = import_tcia(settings_for(download, out=str(tmp_path / "manifest.csv"), studies_per_patient="all"))
    scans = Counter(r["patient_id"] for r in report.rows)
    assert sorted(scans.values()) == [1] * (PATIENTS - 1) + [2]
    assert not any("later PET/CT" in reason for _, reason in report.skipped)


def test_xlsx_table_with_renamed_columns_gives_the_same_manifest(download, tmp_path):
    table = pd.read_csv(download / CLINICAL, dtype=str).rename(columns={"NewPatientID": "Subject", "N-Stage": "cN"})
    table.to_excel(tmp_path / "clinical.xlsx", index=False)
    import_tcia(settings_for(download, out=str(tmp_path / "manifest.csv"), clinical=str(tmp_path / "clinical.xlsx"),
                             patient_column="Subject", n_stage_column="cN"))
    import_tcia(settings_for(download))
    without_masks = [{**row, "totalseg": ""} for row in read_rows(download / "manifest.csv")]  # none in tmp_path
    assert read_rows(tmp_path / "manifest.csv") == without_masks


def test_a_missing_table_or_column_is_refused_by_name(download, tmp_path):
    with pytest.raises(TciaImportError, match="no column 'N stage'.*import_tcia"):
        import_tcia(settings_for(download, out=str(tmp_path / "m.csv"), n_stage_column="N stage"))
    with pytest.raises(TciaImportError, match="clinical table '' not found.*--clinical"):
        import_tcia(settings_for(download, out=str(tmp_path / "m.csv"), clinical=""))
    with pytest.raises(SettingsError, match="patient_column is not set"):
        import_tcia(settings_for(download, out=str(tmp_path / "m.csv"), patient_column=""))


def test_command_line_reads_the_columns_from_the_dataset_config(download, tmp_path, capsys):
    out = tmp_path / "manifest.csv"
    argv = [str(download / TREE), "--clinical", str(download / CLINICAL), "--out", str(out), "--dataset", "demo-dx"]
    assert cli(argv) == 0 and len(read_rows(out)) == PATIENTS
    assert "studies paired: 8" in capsys.readouterr().out
    assert "studies skipped: 5" in (tmp_path / "import_tcia.log").read_text(encoding="utf-8")
    assert cli([*argv, "--n-stage-column", "nope"]) == 1
    assert "error: " in (err := capsys.readouterr().err) and "no column 'nope'" in err and "Traceback" not in err
    assert cli(["--clinical", str(download / CLINICAL)]) == 2
    assert "root is required" in capsys.readouterr().err


def test_a_foreign_file_among_the_links_is_refused(download, tmp_path):
    (tmp_path / "series" / "dx-0001-s1").mkdir(parents=True)
    (tmp_path / "series" / "dx-0001-s1" / "notes.txt").write_text("mine")
    with pytest.raises(TciaImportError, match="notes.txt"):
        import_tcia(settings_for(download, out=str(tmp_path / "manifest.csv")))


@pytest.mark.parametrize(("cells", "expected"), [
    ({"N2"}, 2), ({"2"}, 2), ({"cN1"}, 1), ({"N2a"}, 2), ({" n3 "}, 3), (None, "not in the clinical table"),
    ({"NX"}, "unknown"), ({"N4"}, "is not an N-stage"), ({"N1", "N2"}, "disagree"),
])
def test_n_stage_cells(cells, expected):
    result = parse_n_stage(cells)
    assert result == expected if isinstance(expected, int) else expected in result


def _series(uid: str, modality: str, study: str, frame: str, date: str = "20240101", slice_mm: float = 2.0) -> Series:
    return Series("P", study, uid, frame, modality, date, "1200", slice_mm, Path("/d") / study / uid, modality)


def test_a_shared_frame_of_reference_settles_a_study_with_two_pets():
    report = ImportReport()
    pairs = pair_patient([_series("ct", "CT", "s", "F1"), _series("nac", "PT", "s", "F2"),
                          _series("ac", "PT", "s", "F1")], Path("/d"), report)
    assert [(p.ct.uid, p.pet.uid, p.rule) for p in pairs] == [("ct", "ac", "same study")] and not report.skipped


def test_two_cts_of_the_pets_day_in_other_studies_are_refused_as_ambiguous():
    report = ImportReport()
    pairs = pair_patient([_series("ct1", "CT", "a", "F1"), _series("ct2", "CT", "b", "F2"),
                          _series("pt", "PT", "c", "F3")], Path("/d"), report)
    assert pairs == []
    reasons = dict(report.skipped)
    assert "ambiguous" in reasons["c"] and "day" in reasons["c"]
    assert reasons["a"].startswith("CT only") and reasons["b"].startswith("CT only")



@pytest.mark.parametrize("ct_choice", ["refuse", "thinnest"])
def test_two_ct_reconstructions_are_refused_or_the_thinnest_taken(ct_choice):
    series = [_series("ct-5mm", "CT", "s", "F", slice_mm=5.0), _series("ct-1mm", "CT", "s", "F", slice_mm=1.25),
              _series("pt", "PT", "s", "F")]
    report = ImportReport()
    pairs = pair_patient(series, Path("/d"), report, ct_choice)
    if ct_choice == "thinnest":
        assert [(p.ct.uid, p.pet.uid) for p in pairs] == [("ct-1mm", "pt")] and not report.skipped
    else:
        assert pairs == [] and "or set ct_choice = thinnest" in dict(report.skipped)["s"]


def test_the_thinnest_ct_does_not_break_a_tie_of_equal_slices():
    series = [_series("a", "CT", "s", "F"), _series("b", "CT", "s", "F"), _series("pt", "PT", "s", "F")]
    report = ImportReport()
    assert pair_patient(series, Path("/d"), report, "thinnest") == []
    assert "thinnest CT slices" in dict(report.skipped)["s"]
