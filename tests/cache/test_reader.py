"""The reader: memory maps, compressed copies, refusals with reasons, LRU bound, locking and read-only folders."""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from cache import reader as reader_module
from cache import schema
from cache.build_settings import BuildSettings, expected_settings
from cache.export import export_file
from cache.reader import CacheError, CacheReader, SchemaVersionError, StaleCacheError, open_scan, read_info
from cache.writer import write_scan
from tests.cache.conftest import tiny_record

READ_AND_SAMPLE = """
import sys
import numpy as np
from cache.reader import CacheReader
from cache.sampler import PatchSampler, SamplerSettings
reader = CacheReader(sys.argv[1:])
sampler = PatchSampler(reader, SamplerSettings(patch_size_vox=8))
batch = sampler.sample([0, 0], ["7", "7"], np.random.default_rng(0))
assert reader.scan(0).memory_mapped
print("ok", float(batch.image.sum()))
"""


def test_memory_mapped_arrays_equal_what_was_written(cache_file, record):
    with open_scan(cache_file) as scan:
        assert scan.memory_mapped
        assert np.array_equal(scan.ct, record.ct_hu) and np.array_equal(scan.suv, record.suv)
        assert np.array_equal(scan.station_labels, record.station_labels)
        table = record.stations[0]
        index, cdf = scan.table(table.name)
        assert np.array_equal(index, table.index) and np.array_equal(cdf, table.cdf)
        assert not scan.ct.flags.writeable


def test_compressed_copy_is_read_through_h5py(cache_file, record, tmp_path):
    copy = export_file(cache_file, tmp_path / "export" / cache_file.name, compress=True)
    with h5py.File(copy, "r") as f:
        assert f[schema.CT].compression == "gzip"
    with open_scan(copy) as scan:
        assert not scan.memory_mapped
        assert np.array_equal(scan.ct[2:5, 3:9, 1:4], record.ct_hu[2:5, 3:9, 1:4])
        assert np.array_equal(scan.table(record.stations[0].name)[1], record.stations[0].cdf)
    assert read_info(copy).compressed and not read_info(cache_file).compressed


def test_other_schema_version_is_refused_with_the_rebuild_command(cache_file):
    with h5py.File(cache_file, "r+") as f:
        f.attrs[schema.SCHEMA_VERSION_ATTR] = 1
    with pytest.raises(SchemaVersionError,
                       match=r"schema version 1, this tool reads version 2; rebuild with: python -m preprocess "
                             r"--dataset tiny --force"):
        open_scan(cache_file)


def test_other_settings_are_refused_naming_the_setting(cache_file):
    current = expected_settings(BuildSettings(spacing_mm=1.0))
    with pytest.raises(StaleCacheError, match=r"BuildSettings\.spacing_mm: file 2\.0, current 1\.0; rebuild with: "
                                              r"python -m preprocess --dataset tiny --force"):
        open_scan(cache_file, current)
    with pytest.raises(StaleCacheError, match="spacing_mm"):
        CacheReader([cache_file], current)
    assert open_scan(cache_file, expected_settings(BuildSettings(spacing_mm=2.0))).memory_mapped


def test_a_file_that_is_not_hdf5_is_refused(tmp_path):
    bad = tmp_path / "p__s.h5"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(CacheError, match="not a readable HDF5 file"):
        read_info(bad)
    with pytest.raises(CacheError, match="is a folder, not a cache file; .* python -m cache ls"):
        read_info(tmp_path)


def test_reader_keeps_at_most_max_open_files(tmp_path):
    paths = [write_scan(tmp_path / f"p{i}__s.h5", tiny_record(f"p{i}", "s", seed=i)) for i in range(3)]
    reader = CacheReader(paths, max_open=2)
    assert reader.n_open == 0  # nothing opened until used
    for i in (0, 1, 2, 0):
        assert reader.scan(i).info.patient_id == f"p{i}"
    assert reader.n_open == 2
    assert list(reader._open) == [2, 0]  # noqa: SLF001 -- least recently used (1) was closed


def test_reading_works_without_hdf5_file_locking(cache_file):
    env = {**os.environ, "HDF5_USE_FILE_LOCKING": "FALSE"}
    result = subprocess.run([sys.executable, "-c", READ_AND_SAMPLE, str(cache_file)], env=env, capture_output=True,
                            text=True, cwd=Path(__file__).parents[2])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def read_only_command(folder: Path, file: Path) -> list[str]:
    """The reader command, run where `folder` cannot be written: a read-only bind mount when we are root (root
    ignores permissions), else the folder's own permissions."""
    command = [sys.executable, "-c", READ_AND_SAMPLE, str(file)]
    if os.geteuid() != 0:
        return command
    if shutil.which("unshare") is None:
        pytest.skip("running as root without unshare: cannot make a folder read-only for this process")
    mount = f"mount --bind {folder} {folder} && mount -o remount,ro,bind {folder} && touch {folder}/w 2>/dev/null"
    return ["unshare", "-m", "sh", "-c", f"{mount}; test ! -e {folder}/w && exec {shlex.join(command)}"]


def test_a_read_only_cache_folder_serves_readers(cache_file):
    folder = cache_file.parent
    for path in [*folder.iterdir(), folder]:
        path.chmod(0o555 if path.is_dir() else 0o444)
    before = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
    try:
        result = subprocess.run(read_only_command(folder, cache_file), capture_output=True, text=True,
                                cwd=Path(__file__).parents[2])
        if os.geteuid() == 0 and "mount" in result.stderr:
            pytest.skip(f"no read-only bind mount here: {result.stderr.strip()}")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("ok")
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == before
    finally:
        folder.chmod(0o755)


def flip_index_bit(path: Path) -> None:
    """Station 7's first voxel index moved far outside the volume (its checksum no longer matches)."""
    with h5py.File(path, "r+") as f:
        index = f["stations/7/index"]
        values = index[()]
        values[0] ^= 1 << 30
        index[...] = values


def flip_ct_byte(path: Path) -> None:
    """One byte of the CT volume flipped in place, as a disk error would (its checksum no longer matches)."""
    with h5py.File(path, "r") as f:
        offset = f[schema.CT].id.get_offset()
    with open(path, "r+b") as raw:
        raw.seek(offset + 1001)
        byte = raw.read(1)[0]
        raw.seek(offset + 1001)
        raw.write(bytes([byte ^ 0x10]))


def test_a_flipped_index_byte_is_refused_on_open_not_cropped_as_padding(cache_file):
    """A high index byte flipped puts a station's voxel outside the volume (it cropped an all-zero patch)."""
    flip_index_bit(cache_file)
    with pytest.raises(CacheError, match=r"station '7': index holds voxels outside"):
        open_scan(cache_file, verify=False)
    with pytest.raises(CacheError, match=r"dataset 'stations/7/index' does not match its checksum"):
        open_scan(cache_file)


def test_a_cdf_that_is_not_a_distribution_is_refused(cache_file):
    with h5py.File(cache_file, "r+") as f:
        cdf = f["stations/7/cdf"]
        values = cdf[()]
        values[1] = values[0] - 0.5
        cdf[...] = values
    with pytest.raises(CacheError, match=r"station '7': cdf is not non-decreasing"):
        open_scan(cache_file, verify=False)


@pytest.mark.parametrize("obj, attr, value, message", [
    ("stations/7", schema.BBOX_ATTR, [0, 0, 0, 99, 5, 5], r"station '7' bbox .* is not inside the volume"),
    ("stations/7", schema.SUV_MAX_ATTR, np.nan, r"station '7' statistics are not finite"),
    (schema.LABELS_GROUP, schema.N_CLINICAL_ATTR, 7, r"labels n_clinical 7 is not 0-3"),
    (schema.CT, "spacing", [0.0, 2.0, 2.0], r"is not a valid geometry"),
])
def test_metadata_invariants_are_checked_on_open(cache_file, obj, attr, value, message):
    with h5py.File(cache_file, "r+") as f:
        f[obj].attrs[attr] = value
    with pytest.raises(CacheError, match=message + r".*rebuild with: python -m preprocess --dataset tiny --force"):
        read_info(cache_file)


def test_a_damaged_volume_gives_an_error_not_a_patch(cache_file, record):
    """Reads are verified: one flipped CT byte stops `open_scan` and the `CacheReader`, naming the dataset."""
    flip_ct_byte(cache_file)
    with pytest.raises(CacheError, match=r"dataset 'image/ct' does not match its checksum"):
        open_scan(cache_file)
    with pytest.raises(CacheError, match=r"image/ct"):
        CacheReader([cache_file])
    with open_scan(cache_file, verify=False) as scan:  # what an unverified read would have served
        assert not np.array_equal(np.asarray(scan.ct), record.ct_hu)


# The reader's HDF5 open, wrapped by the tests below to land another process's rename between the reader's opens.
REAL_OPEN_H5 = reader_module._open_h5  # noqa: SLF001 -- the one moment a test cannot reach otherwise


def replace_with(path: Path, source: Path) -> None:
    """What a rebuild or relabel does: a new file (a new inode) renamed over `path`."""
    temporary = path.with_name(".incoming.h5")
    shutil.copyfile(source, temporary)
    os.replace(temporary, path)


def test_a_file_replaced_while_being_opened_is_never_served_unverified(cache_file, record, tmp_path, monkeypatch):
    """A rebuild renames a damaged file into place right after HDF5 opened the sound one: the reader serves the
    file it verified (its volume at its own offsets), and the new file is verified when next opened."""
    damaged = shutil.copyfile(cache_file, tmp_path / "damaged.h5")
    flip_ct_byte(damaged)
    replaced = []

    def open_then_replace(path: Path) -> h5py.File:  # the real open; the rename lands at that moment
        f = REAL_OPEN_H5(path)
        if not replaced:
            replace_with(path, damaged)
            replaced.append(path)
        return f

    monkeypatch.setattr(reader_module, "_open_h5", open_then_replace)
    with open_scan(cache_file) as scan:
        assert replaced and np.array_equal(scan.ct, record.ct_hu)
    with pytest.raises(CacheError, match=r"dataset 'image/ct' does not match its checksum"):
        open_scan(cache_file)


def test_a_file_replaced_between_the_two_opens_is_opened_again(cache_file, tmp_path, monkeypatch):
    other = tiny_record(seed=1)
    rebuilt = write_scan(tmp_path / "rebuilt" / cache_file.name, other)
    replaced = []

    def replace_then_open(path: Path) -> h5py.File:  # the rename lands after the raw open, before HDF5's
        if not replaced:
            replace_with(path, rebuilt)
            replaced.append(path)
        return REAL_OPEN_H5(path)

    monkeypatch.setattr(reader_module, "_open_h5", replace_then_open)
    with open_scan(cache_file) as scan:
        assert replaced and np.array_equal(scan.ct, other.ct_hu) and np.array_equal(scan.suv, other.suv)
        now = cache_file.stat()
        assert scan.identity == (now.st_ino, now.st_size, now.st_mtime_ns)


def test_a_file_replaced_at_every_open_is_refused_naming_the_cause(cache_file, tmp_path, monkeypatch):
    spare = shutil.copyfile(cache_file, tmp_path / "spare.h5")

    def replace_then_open(path: Path) -> h5py.File:
        replace_with(path, spare)
        return REAL_OPEN_H5(path)

    monkeypatch.setattr(reader_module, "_open_h5", replace_then_open)
    with pytest.raises(CacheError, match=r"p1__s1.h5: replaced by another file twice while being opened"):
        open_scan(cache_file)


def test_a_replaced_file_has_its_sampling_tables_checked_again(cache_file, tmp_path):
    """Tables are checked once per file and process, a file being its inode, size and modification time."""
    open_scan(cache_file, verify=False).close()
    damaged = shutil.copyfile(cache_file, tmp_path / "damaged.h5")
    flip_index_bit(damaged)
    replace_with(cache_file, damaged)
    with pytest.raises(CacheError, match=r"station '7': index holds voxels outside"):
        open_scan(cache_file, verify=False)
