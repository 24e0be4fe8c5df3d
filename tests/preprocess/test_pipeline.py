"""`python -m preprocess` on a tiny phantom cohort: files written and verified, current scans skipped, --force,
failures reported while the rest goes on, shards, concurrent runs, no PHI in any file."""

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest

from cache import schema
from cache.reader import cache_files, read_info
from cache.verify import verify_file
from preprocess.__main__ import main
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from preprocess.pipeline import parse_shard, qc_values, select_rows, vote_agreement

try:
    from preprocess.register import map_stations  # noqa: F401 -- only whether it exists
    REGISTRATION = True
except ImportError:
    REGISTRATION = False
needs_registration = pytest.mark.skipif(not REGISTRATION, reason="multi-atlas registration has not landed yet")

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three phantom scans (one with a DICOM PET) and three atlases at 4 mm."""
    root = tmp_path_factory.mktemp("tiny")
    generate_cohort(PhantomSettings(out=str(root), patients=3, atlases=3, spacing_mm=4.0, pet_spacing_mm=4.0,
                                    dicom_pet_fraction=0.34))
    return root


def config(cohort: Path, tmp_path: Path, name: str = "tiny") -> Path:
    """A dataset config over the cohort whose cache goes to this test's own folder."""
    path = tmp_path / f"{name}.toml"
    path.write_text(f'root = "{cohort}"\ncache_root = "{tmp_path / "cache"}"\ntotalseg_version = "v2"\n'
                    '[preprocess]\nspacing_mm = 4.0\nregistration_preset = "demo"\n')
    return path


def run(*args) -> int:
    return main([*map(str, args), "--device", "cpu"])


@needs_registration
def test_chain_writes_sound_files_then_skips_them_until_forced(cohort, tmp_path, capsys):
    dataset = config(cohort, tmp_path)
    assert run("--dataset", dataset) == 0
    files = cache_files(tmp_path / "cache" / "tiny")
    assert len(files) == 3 and all(verify_file(f).ok for f in files)
    info = read_info(files[0])
    assert info.settings["BuildSettings"]["spacing_mm"] == 4.0 and len(info.stations) >= 15
    with h5py.File(files[0], "r") as f:
        assert f[schema.QC_TIMINGS_GROUP].attrs["register"] > 0 and "weight_maps" in f[schema.QC_TIMINGS_GROUP].attrs
    assert "3 written, 0 skipped" in capsys.readouterr().out
    assert run("--dataset", dataset) == 0
    assert "0 written, 3 skipped" in capsys.readouterr().out
    assert run("--dataset", dataset, "--force", "--shard", "1/2") == 0
    assert "1 scan(s): 1 written, 0 skipped" in capsys.readouterr().out


@needs_registration
def test_no_phi_reaches_the_cache(cohort, tmp_path):
    """No byte string of a patient's DICOM identity, UIDs or input paths appears anywhere in a cache file."""
    assert run("--dataset", config(cohort, tmp_path)) == 0
    dicom = sorted(cohort.glob("scans/*/pet_dicom/*"))
    assert dicom, "the cohort should hold one DICOM PET"
    header = pydicom.dcmread(dicom[0], stop_before_pixels=True)
    secrets = {str(header.PatientName), str(header.StudyInstanceUID), str(header.SeriesInstanceUID),
               str(header.SOPInstanceUID), str(header.FrameOfReferenceUID), str(cohort), "pet_dicom", "nii.gz"}
    for path in cache_files(tmp_path / "cache" / "tiny"):
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, f"{secret!r} found in {path}"


@needs_registration
def test_a_failing_scan_is_reported_and_the_others_are_written(cohort, tmp_path, capsys):
    broken = tmp_path / "broken"
    subprocess.run(["cp", "-r", str(cohort), str(broken)], check=True)
    victim = sorted(broken.glob("scans/*/ct.nii.gz"))[1]
    victim.write_bytes(b"not an image")
    assert run("--dataset", config(broken, tmp_path)) == 1
    captured = capsys.readouterr()
    assert "2 written, 0 skipped (current), 1 failed" in captured.out
    assert f"FAILED {victim.parent.name.rsplit('-', 1)[0]}" in captured.err or "FAILED" in captured.err
    assert "ct" in captured.err.split("FAILED", 1)[1]
    assert len(cache_files(tmp_path / "cache" / "tiny")) == 2


@needs_registration
def test_two_runs_of_one_scan_at_once_leave_a_sound_file(cohort, tmp_path):
    dataset = config(cohort, tmp_path)
    command = [sys.executable, "-m", "preprocess", "--dataset", str(dataset), "--force", "--shard", "0/3",
               "--device", "cpu"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert [r.wait(timeout=300) for r in runs] == [0, 0]
    folder = tmp_path / "cache" / "tiny"
    files = cache_files(folder)
    assert len(files) == 1 and verify_file(files[0]).ok
    assert sorted(p.name for p in folder.iterdir()) == [files[0].name]  # no temporary litter
    with h5py.File(files[0], "r") as f:
        assert np.isin(np.unique(f[schema.STATION_LABELS][()]), np.arange(18)).all()


def test_shard_parsing_and_selection():
    assert parse_shard("") == (0, 1) and parse_shard("2/4") == (2, 4)
    with pytest.raises(ValueError, match="K must be in 0..N-1"):
        parse_shard("4/4")
    with pytest.raises(ValueError, match="expected K/N"):
        parse_shard("first")
    rows = [type("Row", (), {"key": k})() for k in ("c", "a", "d", "b")]
    assert [r.key for r in select_rows(rows, "0/2")] == ["a", "c"]
    assert [r.key for r in select_rows(rows, "1/2")] == ["b", "d"]


def test_vote_agreement_is_the_mean_vote_inside_each_station():
    labels = np.array([[[0, 1, 1, 2]]], dtype=np.uint8)
    winner = np.array([[[1.0, 0.6, 1.0, 0.4]]])
    assert vote_agreement(labels, winner) == {1: pytest.approx(0.8), 2: pytest.approx(0.4)}
    per_station = np.zeros((17, 1, 1, 4))
    per_station[0, 0, 0, 1:3] = [0.2, 0.4]
    per_station[1, 0, 0, 3] = 1.0
    assert vote_agreement(labels, per_station) == {1: pytest.approx(0.3), 2: pytest.approx(1.0)}


def test_qc_values_keep_numbers_and_drop_strings_from_provenance():
    provenance = {"input": "/data/Doe^John/pet", "suv": {"factor": 2.5, "rule": "BQML", "series_uid": "1.2.3"},
                  "crop_box_zyx": [[0, 4], [1, 5]], "fallbacks": []}
    assert qc_values(provenance, numeric_only=True).keys() == {"suv", "crop_box_zyx"}
    assert qc_values(provenance, numeric_only=True)["suv"] == {"factor": 2.5}
    assert qc_values({"atlas-01": {"dice": 0.9, "stage": "affine"}}, numeric_only=False) == {
        "atlas-01": {"dice": 0.9, "stage": "affine"}}
