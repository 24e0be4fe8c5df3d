"""`python -m preprocess` on a tiny phantom cohort: files written and verified, current scans skipped, --force,
failures reported while the rest goes on, shards, concurrent runs, no PHI in any file."""

import contextlib
import csv
import os
import re
import shutil
import subprocess
import sys
from dataclasses import replace
from functools import partial
from pathlib import Path

import h5py
import numpy as np
import pydicom
import pytest

from cache import schema
from cache.__main__ import main as cache_main
from cache.build_settings import build_settings_for
from cache.dataset import load_dataset
from cache.describe import info_lines
from cache.manifest import read_manifest, write_manifest
from cache.reader import cache_files, read_info
from cache.verify import verify_file
from cache.writer import CacheWriteError, write_scan
from preprocess.__main__ import main
from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings
from preprocess.pipeline import (
    cache_state,
    parse_shard,
    qc_values,
    registration_qc,
    run_pipeline,
    scan_memory_budget_gb,
    select_rows,
    vote_agreement,
)
from preprocess.settings import PreprocessSettings
from preprocess.suv import SuvSettings
from tests.cache.conftest import tiny_record

try:
    from preprocess.register import map_stations  # noqa: F401 -- only whether it exists
    REGISTRATION = True
except ImportError:
    REGISTRATION = False
needs_registration = pytest.mark.skipif(not REGISTRATION, reason="multi-atlas registration has not landed yet")

REPO = Path(__file__).parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """Three phantom scans (one with a DICOM PET) and one atlas at 6 mm: registration stays cheap."""
    root = tmp_path_factory.mktemp("tiny")
    generate_cohort(PhantomSettings(out=str(root), patients=3, atlases=1, spacing_mm=6.0, pet_spacing_mm=6.0,
                                    dicom_pet_fraction=0.34))
    return root


def config(root: Path, cache_root: Path, name: str = "tiny") -> Path:
    """A dataset config over a cohort, its cache under `cache_root`."""
    cache_root.mkdir(parents=True, exist_ok=True)
    path = cache_root / f"{name}.toml"  # the dataset is named after the file
    path.write_text(f'root = "{root}"\ncache_root = "{cache_root}"\ntotalseg_version = "v2"\n'
                    '[preprocess]\nspacing_mm = 6.0\nregistration_preset = "demo"\n')
    return path


def run(*args) -> int:
    return main([*map(str, args), "--device", "cpu"])


def dicom_shard(root: Path) -> str:
    """The shard (of 3) that holds the scan whose PET is a DICOM series, so the PHI check sees DICOM headers."""
    rows = sorted(read_manifest(root / "manifest.csv", root).rows, key=lambda r: r.key)
    dicom = [i for i, row in enumerate(rows) if row.pet.is_dir()]
    assert dicom, "the cohort should hold a DICOM PET"
    return f"{dicom[0]}/3"


@pytest.fixture(scope="module")
def built(cohort, tmp_path_factory) -> Path:
    """The cache of the DICOM-PET scan (one registration for the whole module)."""
    cache_root = tmp_path_factory.mktemp("cache")
    assert run("--dataset", config(cohort, cache_root), "--shard", dicom_shard(cohort)) == 0
    return cache_root / "tiny"


@needs_registration
def test_chain_writes_a_sound_file_then_skips_it_while_current(cohort, built, capsys):
    files = cache_files(built)
    assert len(files) == 1 and verify_file(files[0]).ok
    info = read_info(files[0])
    assert info.settings["BuildSettings"]["spacing_mm"] == 6.0 and info.settings["RegistrationSettings"]
    assert set(info.inputs) == {"ct", "pet", "totalseg", "lesions", "atlas_bank"} and len(info.stations) >= 10
    with h5py.File(files[0], "r") as f:
        timings = f[schema.QC_TIMINGS_GROUP].attrs
        assert timings["register"] > 0 and {"weight_maps", "read_ct", "hash_inputs"} <= set(timings)
        assert "deformable" in f["qc/registration/atlas-01"]
    assert run("--dataset", config(cohort, built.parent), "--shard", dicom_shard(cohort)) == 0
    assert "1 scan(s): 0 written, 0 relabelled (labels only), 1 skipped (current), 0 failed" in capsys.readouterr().out


@needs_registration
def test_no_phi_reaches_the_cache(cohort, built):
    """No byte string of the patient's DICOM identity, UIDs or input paths appears anywhere in the cache file."""
    header = pydicom.dcmread(sorted(cohort.glob("scans/*/pet_dicom/*"))[0], stop_before_pixels=True)
    secrets = {str(header.PatientName), str(header.StudyInstanceUID), str(header.SeriesInstanceUID),
               str(header.SOPInstanceUID), str(header.FrameOfReferenceUID), str(cohort), "pet_dicom", "nii.gz"}
    for path in cache_files(built):
        content = path.read_bytes()
        for secret in secrets:
            assert secret.encode() not in content, f"{secret!r} found in {path}"


@needs_registration
def test_failing_scans_are_reported_and_the_run_goes_on(cohort, built, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(cohort, broken)
    victims = [d for d in sorted((broken / "scans").iterdir()) if not (d / "pet_dicom").exists()]
    for victim in victims:
        (victim / "ct.nii.gz").write_bytes(b"not an image")
    assert run("--dataset", config(broken, built.parent)) == 1  # the built scan is current: skipped
    captured = capsys.readouterr()
    assert "3 scan(s): 0 written, 0 relabelled (labels only), 1 skipped (current), 2 failed" in captured.out
    for victim in victims:
        assert f"FAILED {victim.name.rsplit('-', 1)[0]}__{victim.name}: " in captured.err
    assert "column 'ct'" in captured.err or "ct.nii.gz" in captured.err


@needs_registration
def test_changed_labels_are_stale_then_rewritten_without_registering(cohort, built, tmp_path, capsys):
    """Labels are part of "current": `cache verify --dataset` calls the file stale, the next run rewrites only
    its labels (no registration), and the file then holds the manifest's labels and verifies."""
    cache_root = tmp_path / "cache"
    shutil.copytree(built, cache_root / "tiny")
    path = cache_files(cache_root / "tiny")[0]
    with open(cohort / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        if f"{row['patient_id']}__{row['scan_id']}" == path.stem:
            row.update(n_clinical="3", stations_clinical="", n_pathological="", stations_pathological="")
    write_manifest(tmp_path / "relabelled.csv", rows)
    dataset = config(cohort, cache_root)
    dataset.write_text(dataset.read_text().replace("[preprocess]", f'manifest = "{tmp_path / "relabelled.csv"}"\n'
                                                                   "[preprocess]"))
    assert cache_main(["verify", "--dataset", str(dataset), "--skip-inputs"]) == 1
    assert f"STALE {path.stem}: labels differ (file vs manifest): n_clinical" in capsys.readouterr().err
    assert run("--dataset", dataset, "--shard", dicom_shard(cohort)) == 0
    out = capsys.readouterr().out
    assert "1 scan(s): 0 written, 1 relabelled (labels only), 0 skipped" in out and "register" not in out
    info = read_info(path)
    assert info.labels.n_clinical == 3 and np.all(info.labels.station_clinical == -1)
    assert info.labels.n_pathological is None and verify_file(path).ok
    assert cache_main(["verify", "--dataset", str(dataset), "--skip-inputs"]) == 1  # the other two are missing
    assert "STALE" not in capsys.readouterr().err


@needs_registration
def test_peak_memory_is_recorded_and_a_scan_over_the_memory_limit_fails_while_the_others_go_on(cohort, built,
                                                                                             tmp_path, capsys):
    cache_root = tmp_path / "cache"
    shutil.copytree(built, cache_root / "tiny")
    dataset = config(cohort, cache_root)
    assert run("--dataset", dataset, "--max-memory-gb", "100") == 0
    estimates = {}
    for path in cache_files(cache_root / "tiny"):
        with h5py.File(path, "r") as f:
            memory = dict(f[schema.QC_MEMORY_GROUP].attrs)
        assert 0 < memory["estimate_gib"] < memory["budget_gib"] and memory["atlas_batch"] == 1
        assert memory[schema.QC_PEAK_RSS_ATTR] > 0.1  # resident memory of the whole chain, torch included
        estimates[path] = memory["estimate_gib"]
    assert re.search(r"memory: peak resident \d+\.\d\d GiB, registration estimate \d+\.\d\d GiB of a \d+\.\d\d GiB "
                     r"budget, 1 atlas\(es\) at once", "\n".join(info_lines(read_info(path))))
    largest, second = sorted(set(estimates.values()))[-1:-3:-1]
    too_large = next(p for p, e in estimates.items() if e == largest)
    other = next(p for p, e in estimates.items() if e == second)
    too_large.unlink()
    other.unlink()
    capsys.readouterr()
    assert run("--dataset", dataset, "--max-memory-gb", str((largest + second) / 2)) == 1
    captured = capsys.readouterr()
    assert "3 scan(s): 1 written, 0 relabelled (labels only), 1 skipped (current), 1 failed" in captured.out
    assert re.search(rf"FAILED {too_large.stem}: MemoryBudgetError: scan {too_large.stem} \(crop \d+x\d+x\d+ "
                     r"voxels at 6 mm, 1 atlases\): registration needs an estimated .* GiB with one atlas at a time",
                     captured.err)
    assert other.is_file() and not too_large.exists()


def test_workers_share_the_memory_limit():
    assert scan_memory_budget_gb(12.0, 3, "cpu") == 4.0
    assert scan_memory_budget_gb(0.0, 1, "cpu") == 0.0  # one worker: the scan reads what is free when it starts
    assert 0 < scan_memory_budget_gb(0.0, 2, "cpu") < 64


@pytest.mark.slow
@needs_registration
def test_two_runs_of_one_scan_at_once_leave_a_sound_file(cohort, tmp_path):
    dataset = config(cohort, tmp_path / "cache")
    command = [sys.executable, "-m", "preprocess", "--dataset", str(dataset), "--force", "--shard", "0/3",
               "--device", "cpu"]
    runs = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for _ in range(2)]
    assert [r.wait(timeout=600) for r in runs] == [0, 0]
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


def test_registration_qa_records_nest_by_atlas_and_stage():
    records = [{"atlas": "atlas-01", "stage": "linear", "dice_mean": 0.8, "dice": {"aorta": 0.7}},
               {"atlas": "atlas-01", "stage": "deformable", "dice_mean": 0.9, "dice": {"aorta": 0.95}}]
    assert registration_qc(records) == {"atlas-01": {"linear": {"dice_mean": 0.8, "dice": {"aorta": 0.7}},
                                                     "deformable": {"dice_mean": 0.9, "dice": {"aorta": 0.95}}}}


def test_cache_state_rebuilds_damaged_files_and_relabels_changed_labels(tmp_path):
    record = tiny_record()
    path = write_scan(tmp_path / "p1__s1.h5", record)
    info = read_info(path)
    state = partial(cache_state, path, info.settings_hash, info.inputs_hash)
    assert state(record.labels, "paper") == "current"
    assert state(replace(record.labels, n_pathological=2), "paper") == "relabel"
    assert state(record.labels, "other") == "relabel"
    assert cache_state(path, "another hash", info.inputs_hash, record.labels, "paper") == "build"
    with h5py.File(path, "r+") as f:
        f.attrs[schema.SCHEMA_VERSION_ATTR] = "two"  # unparsable: rebuilt, not a failed scan
    assert state(record.labels, "paper") == "build"
    path = write_scan(tmp_path / "p1__s1.h5", record)
    with h5py.File(path, "r+") as f:
        f[schema.SUV][0, 0, 0] += 1.0  # damaged content: rebuilt
    assert state(record.labels, "paper") == "build"


@contextlib.contextmanager
def read_only(folder: Path):
    """`folder` unwritable for this process: immutable for root (which ignores permissions), else mode 555."""
    if os.geteuid() == 0:
        if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)]).returncode != 0:
            pytest.skip("running as root without chattr +i: cannot make a folder read-only")
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)


def test_a_read_only_cache_folder_fails_before_any_scan_is_read(cohort, tmp_path):
    """It used to fail when the first file was written, after that scan's registration."""
    cache_root = tmp_path / "cache"
    path = config(cohort, cache_root)
    (cache_root / "tiny").mkdir()
    with read_only(cache_root / "tiny"), pytest.raises(CacheWriteError, match=rf"cache folder {cache_root / 'tiny'} "
                                                                                r"is not writable .*--cache-root"):
        run_pipeline(PreprocessSettings(device="cpu"), build_settings_for(str(path)), SuvSettings(),
                     load_dataset(str(path)))
    assert not any((cache_root / "tiny").glob("*.h5*"))
