"""The atomic writer: complete files only, schema layout, no temporary litter, concurrent writers."""

import dataclasses
import os
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from cache import schema
from cache.checksums import array_digest
from cache.reader import open_scan, read_info
from cache.verify import verify_file
from cache.writer import CacheWriteError, relabel_scan, remove_dead_temps, temp_path, write_scan
from tests.cache.conftest import tiny_record

# A child process that writes one scan (a larger volume, so a write takes a while) over and over.
WRITE_LOOP = """
import sys
import numpy as np
from cache.writer import write_scan
from tests.preprocess.synthetic_scan import synthetic_record
record = synthetic_record("p1", "s1", np.random.default_rng(int(sys.argv[2])), (96, 128, 128), 1.0, "tiny")
for _ in range(int(sys.argv[3])):
    write_scan(sys.argv[1], record)
"""


def temps(folder):
    return sorted(folder.glob(f"*{schema.TEMP_SUFFIX}"))


def test_layout_follows_schema_v2(cache_file, record):
    with h5py.File(cache_file, "r") as f:
        assert set(schema.ROOT_ATTRS) <= set(f.attrs)
        assert f.attrs[schema.SCHEMA_VERSION_ATTR] == 2
        for path in (schema.CT, schema.SUV):
            dataset = f[path]
            assert dataset.chunks is None and dataset.compression is None and dataset.id.get_offset() is not None
            assert set(schema.GRID_ATTRS) <= set(dataset.attrs)
        assert f[schema.CT].dtype == np.int16 and f[schema.SUV].dtype == np.float32
        assert f[schema.STATION_LABELS].dtype == np.uint8
        group = f[schema.station_group(record.stations[0].name)]
        assert set(schema.STATION_ATTRS) <= set(group.attrs)
        assert group[schema.STATION_INDEX].dtype == np.int32 and group[schema.STATION_CDF][-1] == 1.0
        assert f[schema.STATION_CLINICAL].dtype == np.int8 and f[schema.STATION_CLINICAL].shape == (17,)
        checksums = f[schema.CHECKSUMS_GROUP].attrs
        assert checksums[schema.CT] == array_digest(record.ct_hu)
        assert f"{schema.station_group(record.stations[0].name)}/{schema.STATION_CDF}" in checksums
        assert {"@/", "@labels", "@image/ct", f"@{schema.station_group(record.stations[0].name)}"} <= set(checksums)
    info = read_info(cache_file)
    assert info.key == "p1__s1" and info.grid == record.grid


def test_wrong_dtype_is_refused_naming_the_array(tmp_path, record):
    from dataclasses import replace
    with pytest.raises(CacheWriteError, match="ct_hu is float32"):
        write_scan(tmp_path / "x.h5", replace(record, ct_hu=record.ct_hu.astype(np.float32)))
    assert list(tmp_path.iterdir()) == []


def test_dead_writers_temporary_files_are_removed(tmp_path, record):
    path = tmp_path / "p1__s1.h5"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    litter = temp_path(path).name.split(".")
    litter[-4] = dead.stdout.strip()  # .<stem>.<host>.<pid>.<random>.h5.tmp
    litter_path = tmp_path / ".".join(litter)
    litter_path.write_bytes(b"half a file")
    alive = temp_path(path)  # this process: still running, so kept
    alive.write_bytes(b"being written")
    assert remove_dead_temps(tmp_path) == [litter_path]
    assert alive.exists()


def test_killed_writer_leaves_no_file_a_reader_takes_for_complete(tmp_path):
    path = tmp_path / "p1__s1.h5"
    child = subprocess.Popen([sys.executable, "-c", WRITE_LOOP, str(path), "1", "1000"])
    try:
        deadline = time.monotonic() + 60
        while not (path.exists() and temps(tmp_path)):  # at least one complete write, and another under way
            assert time.monotonic() < deadline and child.poll() is None, "the writer never got going"
            time.sleep(0.001)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert temps(tmp_path), "the kill should have caught a write in progress"
    assert verify_file(path).ok  # the previous complete file is intact
    write_scan(path, tiny_record())  # the rerun
    assert temps(tmp_path) == []
    assert verify_file(path).ok
    assert [p.name for p in tmp_path.iterdir()] == ["p1__s1.h5"]


def test_two_processes_writing_one_scan_leave_a_valid_file(tmp_path):
    path = tmp_path / "p1__s1.h5"
    children = [subprocess.Popen([sys.executable, "-c", WRITE_LOOP, str(path), str(seed), "6"]) for seed in (1, 2)]
    assert [child.wait(timeout=120) for child in children] == [0, 0]
    assert verify_file(path).ok
    assert temps(tmp_path) == []
    with open_scan(path) as scan:  # one writer's content, whole
        stored = scan.ct[()]
    candidates = []
    for seed in (1, 2):
        from tests.preprocess.synthetic_scan import synthetic_record
        candidates.append(synthetic_record("p1", "s1", np.random.default_rng(seed), (96, 128, 128), 1.0).ct_hu)
    assert any(np.array_equal(stored, c) for c in candidates)


@pytest.mark.parametrize("field", ["patient_id", "scan_id"])
def test_an_id_that_could_leave_the_folder_is_refused_before_any_file_is_made(tmp_path, record, field):
    folder = tmp_path / "root" / "tiny"
    with pytest.raises(CacheWriteError, match=f"{field} '../../x' is not a valid id"):
        write_scan(folder / "x.h5", dataclasses.replace(record, **{field: "../../x"}))
    assert not any(tmp_path.rglob("*.h5*"))


def test_relabelling_writes_a_new_file_so_a_mapped_reader_keeps_its_data(cache_file, record):
    """Writers never change a file in place: a reader that has it memory-mapped would die of SIGBUS."""
    scan = open_scan(cache_file)
    assert scan.memory_mapped
    inode = cache_file.stat().st_ino
    labels = dataclasses.replace(record.labels, n_pathological=3, station_pathological=record.labels.station_clinical)
    relabel_scan(cache_file, labels, "paper")
    assert cache_file.stat().st_ino != inode
    assert np.array_equal(scan.ct, record.ct_hu)  # the old mapping still reads the old, complete file
    info = read_info(cache_file)
    assert info.labels.n_pathological == 3 and not info.labels.differences(labels) and verify_file(cache_file).ok
    assert np.array_equal(open_scan(cache_file).suv, record.suv)


def test_relabelling_refuses_a_file_whose_attributes_are_damaged(cache_file, record):
    with h5py.File(cache_file, "r+") as f:
        f["stations/7"].attrs[schema.SUV_MAX_ATTR] += 1.0
    with pytest.raises(CacheWriteError, match=r"attributes @stations/7 do not match their checksums; rebuild"):
        relabel_scan(cache_file, record.labels, "paper")
