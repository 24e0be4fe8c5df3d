"""SUVbw from DICOM PET: the 17 IBSI reference series, pydicom-written series, every refusal, and no PHI out."""

from __future__ import annotations

import csv
import gzip
import json
import re
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from preprocess.suv import SuvError, SuvSettings, main, read_suv_series, suv_factor
from tests.preprocess import pet_dicom

REPO = Path(__file__).resolve().parents[2]
IBSI_CASES = (
    "DRO_0_0", "DRO_1_0", "DRO_2_0", "DRO_2_1", "DRO_2_2", "DRO_2_3", "DRO_2_4", "DRO_2_5", "DRO_3_0", "DRO_3_1",
    "DRO_3_2", "DRO_3_3", "DRO_3_4", "DRO_4_0", "DRO_4_1", "DRO_4_2", "DRO_5_0",
)
# DRO_2_3 (Units CM2ML, SUVbsa) stores 0.05 / 0.26 / 1.05 (slope 0.01, truncated): the exact Du Bois
# back-conversion gives these; see test_ibsi_bsa_case_cannot_reach_the_targets for why nothing gives 0.20/1.00/4.00.
EXPECTED = {case: (0.20, 1.00, 4.00) for case in IBSI_CASES} | {"DRO_2_3": (0.19, 0.98, 3.98)}


@pytest.fixture(scope="session")
def ibsi_dro(shared_data: Path, tmp_path_factory) -> Path:
    """The IBSI DRO archive unpacked into a temporary folder (one folder per case: PT/, mask/)."""
    folder = tmp_path_factory.mktemp("ibsi")
    with tarfile.open(shared_data / "suv" / "ibsi_dro" / "ibsi_suv_dro_DRO.tgz") as archive:
        archive.extractall(folder, filter="data")
    return folder / "DRO"


def _in_mask_stats(suv_path: Path, mask_path: Path) -> tuple[float, float, float]:
    suv = sitk.GetArrayFromImage(sitk.ReadImage(str(suv_path)))
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(mask_path))) > 0
    values = suv[mask]
    return float(values.min()), float(np.median(values)), float(values.max())


def test_ibsi_list_names_the_17_cases(shared_data: Path):
    with open(shared_data / "suv" / "ibsi_dro" / "DRO_list.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert tuple(r["ID"] for r in rows) == IBSI_CASES
    assert {(r["SUVmin_expected"], r["SUVmed_expected"], r["SUVmax_expected"]) for r in rows} == {
        ("0.20", "1.00", "4.00")
    }


@pytest.mark.parametrize("case", IBSI_CASES)
def test_ibsi_case_gives_reference_suv(ibsi_dro: Path, tmp_path: Path, case: str, capsys):
    out = tmp_path / f"{case}.nii.gz"
    assert main([str(ibsi_dro / case / "PT"), str(out)]) == 0
    assert "rule:" in capsys.readouterr().out
    stats = _in_mask_stats(out, ibsi_dro / case / "mask" / "DRO_mask.nii.gz")
    assert tuple(round(v, 2) for v in stats) == EXPECTED[case]


def test_ibsi_bsa_case_cannot_reach_the_targets(ibsi_dro: Path):
    """No single factor maps DRO_2_3's stored 0.05/0.26/1.05 to 0.20/1.00/4.00 to two decimals."""
    files = sorted((ibsi_dro / "DRO_2_3" / "PT").glob("*.dcm"))
    stored = set()
    for f in files:
        ds = pydicom.dcmread(f)
        stored |= set(np.unique(ds.pixel_array * float(ds.RescaleSlope)).round(6))
    low, mid, high = sorted(stored - {0.0})
    factors_for = [(t - 0.005) / v for v, t in ((low, 0.2), (mid, 1.0), (high, 4.0))]
    factors_to = [(t + 0.005) / v for v, t in ((low, 0.2), (mid, 1.0), (high, 4.0))]
    assert max(factors_for) > min(factors_to)  # the three intervals of admissible factors do not overlap


def test_cli_runs_as_a_subprocess_and_prints_the_rule(ibsi_dro: Path, tmp_path: Path):
    out = tmp_path / "midnight.nii.gz"
    result = subprocess.run([sys.executable, "-m", "preprocess.suv", str(ibsi_dro / "DRO_4_2" / "PT"), str(out)],
                            cwd=REPO, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "on the day before the scan (midnight)" in result.stdout
    sidecar = json.loads((tmp_path / "midnight.suv.json").read_text())
    assert sidecar["quantity"] == "SUVbw" and sidecar["n_slices"] == 20


def test_series_time_after_acquisition_uses_frame_reference_time(ibsi_dro: Path):
    _, provenance = read_suv_series(ibsi_dro / "DRO_3_2" / "PT")
    assert "FrameReferenceTime" in provenance.rules[0]


def test_earliest_acquisition_time_would_miss_the_ibsi_series_time_case(ibsi_dro: Path, tmp_path: Path):
    """Why FrameReferenceTime comes before the earliest AcquisitionTime: DRO_3_2's earliest slice starts 150 s
    after the series, so taking it as the decay reference gives a median of 1.02 instead of 1.00."""
    folder = tmp_path / "no_frame_reference"
    folder.mkdir()
    for path in (ibsi_dro / "DRO_3_2" / "PT").glob("*.dcm"):
        ds = pydicom.dcmread(path)
        del ds.FrameReferenceTime
        ds.save_as(folder / path.name)
    image, provenance = read_suv_series(folder)
    assert "earliest AcquisitionTime" in provenance.rules[0]
    mask = sitk.GetArrayFromImage(sitk.ReadImage(str(ibsi_dro / "DRO_3_2" / "mask" / "DRO_mask.nii.gz"))) > 0
    assert round(float(np.median(sitk.GetArrayFromImage(image)[mask])), 2) == 1.02


def test_written_series_converts_exactly_with_its_geometry(tmp_path: Path):
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    image, provenance = read_suv_series(folder)
    assert image.GetPixelID() == sitk.sitkFloat32
    assert image.GetSpacing() == pytest.approx(pet_dicom.SPACING_MM)
    assert image.GetOrigin() == pytest.approx(pet_dicom.ORIGIN_MM)
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)
    assert provenance.fallbacks == ()
    assert "SeriesDate/SeriesTime" in provenance.rules[0]


def test_suv_factor_of_one_instance(tmp_path: Path):
    folder = pet_dicom.write_pet_series(tmp_path / "pet")
    ds = pydicom.dcmread(folder / "slice_000.dcm")
    assert suv_factor(ds) == pytest.approx(1.0 / pet_dicom.bqml_per_suv(), rel=1e-9)


def _set_dose_mbq(ds, z):
    ds.RadiopharmaceuticalInformationSequence[0].RadionuclideTotalDose = f"{pet_dicom.DOSE_BQ / 1e6}"


def _set_weight_g(ds, z):
    ds.PatientWeight = f"{pet_dicom.WEIGHT_KG * 1000}"


def _time_only_over_midnight(ds, z):
    """Scan at 00:30 on the 12th, injection 23:30 (time only): one hour, across midnight."""
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
    ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime = "233000"
    ds.SeriesDate = ds.AcquisitionDate = "20240612"
    ds.SeriesTime = ds.AcquisitionTime = "003000"


def _ge_private_after_processing(ds, z):
    ds.SeriesTime = "120000"
    ds.AcquisitionTime = "110500"
    ds.add_new((0x0009, 0x0010), "LO", "GEMS_PETD_01")
    ds.add_new((0x0009, 0x100D), "DT", "20240611110000.00")


def _earliest_acquisition(ds, z):
    ds.SeriesTime = "120000"
    ds.AcquisitionTime = "110000" if z == 0 else "110500"
    del ds.FrameReferenceTime


@pytest.mark.parametrize(
    ("edit", "rule"),
    [
        (_set_dose_mbq, "(RadionuclideTotalDose read as MBq)"),
        (_set_weight_g, "(PatientWeight read as grams)"),
        (_time_only_over_midnight, "day before the scan (midnight)"),
        (_ge_private_after_processing, "GE private scan datetime (0009,100D)"),
        (_earliest_acquisition, "earliest AcquisitionTime (0008,0032)"),
    ],
)
def test_header_variants_give_the_same_suv(tmp_path: Path, edit, rule: str):
    image, provenance = read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", edit))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)
    assert rule in provenance.rules[0]


def test_decay_correction_none_uses_each_frames_time(tmp_path: Path):
    """Uncorrected frames 5 min apart: each is decayed back from its own acquisition time."""
    decay = np.log(2) / pet_dicom.HALF_LIFE_S

    def uncorrected(ds, z):
        ds.DecayCorrection = "NONE"
        ds.CorrectedImage = ["NORM", "ATTN", "SCAT", "RAN"]
        start_s = 300.0 * z
        ds.AcquisitionTime = f"{11:02d}{int(start_s // 60):02d}{int(start_s % 60):02d}"
        duration_s = 300.0
        mean_decay = -np.expm1(-decay * duration_s) / (decay * duration_s)  # frame average of exp(-decay t)
        ds.RescaleSlope = f"{float(ds.RescaleSlope) * np.exp(-decay * start_s) * mean_decay:.10g}"

    image, provenance = read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", uncorrected))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)
    assert "DecayCorrection NONE" in provenance.rules[0]
    assert provenance.factor_max > provenance.factor_min


def test_philips_counts_with_suv_scale_factor(tmp_path: Path):
    def counts(ds, z):
        ds.Units = "CNTS"
        ds.add_new((0x7053, 0x0010), "LO", "Philips PET Private Group")
        ds.add_new((0x7053, 0x1000), "DS", f"{1.0 / pet_dicom.bqml_per_suv():.10g}")

    image, provenance = read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", counts))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)
    assert "(7053,1000)" in provenance.rules[0]


def test_private_tags_of_another_creator_are_ignored(tmp_path: Path):
    def other_vendor(ds, z):
        ds.Units = "CNTS"
        ds.add_new((0x7053, 0x0010), "LO", "SOME OTHER VENDOR")
        ds.add_new((0x7053, 0x1000), "DS", "0.001")

    with pytest.raises(SuvError, match="CNTS without a non-zero Philips SUV scale factor"):
        read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", other_vendor))


def test_mixed_series_is_refused(tmp_path: Path):
    def one_slice_in_counts(ds, z):
        if z == 2:
            ds.Units = "CNTS"
            ds.add_new((0x7053, 0x1000), "DS", "0.001")

    with pytest.raises(SuvError, match="the slices of one series need different conversions"):
        read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", one_slice_in_counts))


def _delete(keyword: str, in_sequence: bool = False):
    def edit(ds, z):
        target = ds.RadiopharmaceuticalInformationSequence[0] if in_sequence else ds
        delattr(target, keyword)
    return edit


def _setter(keyword: str, value, in_sequence: bool = False):
    def edit(ds, z):
        setattr(ds.RadiopharmaceuticalInformationSequence[0] if in_sequence else ds, keyword, value)
    return edit


def _no_injection_time(ds, z):
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime
    del ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartTime


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_delete("PatientWeight"), r"PatientWeight \(0010,1030\) is missing"),
        (_setter("PatientWeight", "0"), r"PatientWeight \(0010,1030\) is 0"),
        (_setter("PatientWeight", "0.2"), r"PatientWeight \(0010,1030\) '?0.2'? is not a plausible weight"),
        (_delete("RadionuclideTotalDose", True), r"RadionuclideTotalDose \(0018,1074\) is None"),
        (_setter("RadionuclideTotalDose", "50000", True), r"neither a plausible MBq"),
        (_no_injection_time, r"RadiopharmaceuticalStartDateTime \(0018,1078\) nor RadiopharmaceuticalStartTime"),
        (_setter("RadiopharmaceuticalStartDateTime", "20240611113000", True), r"is -0.50 h"),
        (_delete("RadionuclideHalfLife", True), r"RadionuclideHalfLife \(0018,1075\)"),
        (_setter("Units", "PROPCPS"), r"Units \(0054,1001\) 'PROPCPS' cannot be converted"),
        (_delete("Units"), r"Units \(0054,1001\) 'missing'"),
        (_setter("CorrectedImage", ["NORM", "DECY"]), r"lacks ATTN"),
        (_setter("CorrectedImage", ["NORM", "ATTN"]), r"lacks DECY but DecayCorrection \(0054,1102\) is START"),
        (_setter("DecayCorrection", "NONE"), r"has DECY but DecayCorrection \(0054,1102\) is NONE"),
        (_setter("DecayCorrection", "FRAME"), r"DecayCorrection \(0054,1102\) is 'FRAME'"),
        (_setter("RescaleIntercept", "5"), r"RescaleIntercept \(0028,1052\) is 5.0"),
        (_setter("Units", "CNTS"), r"CNTS without a non-zero Philips SUV scale factor"),
        (_delete("RadiopharmaceuticalInformationSequence"), r"RadiopharmaceuticalInformationSequence"),
    ],
)
def test_refuses_unconvertible_headers_naming_slice_and_tag(tmp_path: Path, edit, message: str):
    folder = pet_dicom.write_pet_series(tmp_path / "pet", edit)
    with pytest.raises(SuvError, match=message) as raised:
        read_suv_series(folder)
    message = str(raised.value)
    assert re.search(rf"{re.escape(str(folder))}, slice \d of 4 \(InstanceNumber \d\)", message)  # folder, slice
    assert ".dcm" not in message  # never the file name: real DICOM files are often named by their SOP Instance UID


def test_cli_refuses_with_the_reason_and_writes_nothing(tmp_path: Path, capsys):
    folder = pet_dicom.write_pet_series(tmp_path / "pet", _delete("PatientWeight"))
    out = tmp_path / "suv.nii.gz"
    assert main([str(folder), str(out)]) == 1
    assert "PatientWeight (0010,1030) is missing" in capsys.readouterr().err
    assert not out.exists()


def test_weight_fallback_is_explicit_and_recorded(tmp_path: Path, capsys):
    folder = pet_dicom.write_pet_series(tmp_path / "pet", _delete("PatientWeight"))
    image, provenance = read_suv_series(folder, SuvSettings(patient_weight_kg=pet_dicom.WEIGHT_KG))
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)
    assert provenance.fallbacks == (f"patient_weight_kg={pet_dicom.WEIGHT_KG} from settings",)
    out = tmp_path / "suv.nii.gz"
    assert main([str(folder), str(out), "--patient-weight-kg", "80"]) == 0
    assert "fallback: patient_weight_kg=80.0" in capsys.readouterr().out
    assert json.loads((tmp_path / "suv.suv.json").read_text())["fallbacks"] == ["patient_weight_kg=80.0 from settings"]


def _identifiers(folder: Path) -> list[bytes]:
    ds = pydicom.dcmread(next(folder.glob("*.dcm")))
    uids = [ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.FrameOfReferenceUID]
    names = str(ds.PatientName).split("^")
    return [v.encode() for v in [*names, ds.PatientBirthDate, ds.PatientID, *uids]]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
def test_no_patient_identifiers_in_written_files(tmp_path: Path, suffix: str):
    folder = pet_dicom.write_pet_series(tmp_path / "in")
    out_dir = tmp_path / "out"
    assert main([str(folder), str(out_dir / f"suv{suffix}")]) == 0
    written = list(out_dir.iterdir())
    assert len(written) == 2  # the image and its JSON sidecar
    for path in written:
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        for secret in _identifiers(folder):
            assert secret not in data, f"{secret!r} found in {path.name}"


def test_a_frame_duration_that_is_no_number_is_refused_naming_the_tag(tmp_path: Path):
    def no_number(ds, z):
        ds.DecayCorrection = "NONE"
        ds.CorrectedImage = ["ATTN"]
        ds.add_new((0x0018, 0x1242), "LO", "abc")  # ActualFrameDuration, as a damaged file may hold it

    with pytest.raises(SuvError, match=r"ActualFrameDuration \(0018,1242\) is 'abc', not a number"):
        read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", no_number))


@pytest.mark.parametrize("reference_ms", ["0", "-5"])
def test_a_frame_reference_time_of_zero_or_less_falls_back_to_the_earliest_acquisition(tmp_path: Path,
                                                                                         reference_ms: str):
    """SeriesTime after AcquisitionTime and FrameReferenceTime 0: the start used to be back-computed as
    acquisition + mean-count time (150 s of a 300 s frame late, SUV about 1.6 % high)."""
    def edit(ds, z):
        ds.SeriesTime, ds.FrameReferenceTime = "113000.000000", reference_ms

    image, provenance = read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", edit))
    assert "scan start = earliest AcquisitionTime" in provenance.rules[0]
    np.testing.assert_allclose(sitk.GetArrayFromImage(image), pet_dicom.suv_volume(), rtol=1e-4)


def test_suv_errors_name_times_of_day_never_dates(tmp_path: Path):
    def edit(ds, z):
        ds.RadiopharmaceuticalInformationSequence[0].RadiopharmaceuticalStartDateTime = "20240611113000"

    with pytest.raises(SuvError, match=r"injection at 11:30:00 to scan at 11:00:00 is -0.50 h") as raised:
        read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet", edit))
    assert "2024" not in str(raised.value)

    def bad_date(ds, z):
        ds.SeriesDate = "2024-06-11"

    with pytest.raises(SuvError, match=r"SeriesDate is not a DICOM date \(YYYYMMDD\)") as raised:
        read_suv_series(pet_dicom.write_pet_series(tmp_path / "pet2", bad_date))
    assert "2024" not in str(raised.value)
