"""The patch sampler: weighted centres, exact crops and windows, border padding, mask channel, centroid patch."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np
import pytest

from cache.export import export_file
from cache.reader import CacheReader
from cache.sampler import PatchSampler, SamplerSettings, centroid_centre, draw_centres
from cache.writer import StationTable, write_scan
from tests.cache.conftest import tiny_record


def one_voxel_station(record, voxel):
    """The record with station 7 reduced to one voxel: its only possible centre."""
    flat = np.ravel_multi_index(voxel, record.grid.shape_zyx)
    table = StationTable("7", 11, tuple(map(float, voxel)), (0.0, 0.0, 0.0), (*voxel, *(v + 1 for v in voxel)),
                         0.008, 1.0, 1.0, 1.0, np.array([flat], dtype=np.int32), np.array([1.0]))
    return replace(record, stations=(table,))


@pytest.fixture
def known(tmp_path):
    """A file with known intensities: CT ramps over x from -1000 HU by 80 HU, SUV = 0.5 * z."""
    record = tiny_record()
    z, y, x = np.indices(record.grid.shape_zyx)
    record = replace(record, ct_hu=(-1000 + 80 * x).astype(np.int16), suv=(0.5 * z).astype(np.float32))
    record = one_voxel_station(record, (12, 15, 18))
    return record, write_scan(tmp_path / "p1__s1.h5", record)


def test_weights_one_to_three_are_drawn_one_to_three():
    index, cdf = np.array([5, 9], dtype=np.int32), np.array([0.25, 1.0])
    drawn = draw_centres(index, cdf, 20000, np.random.default_rng(0))
    assert set(drawn) == {5, 9}
    assert np.mean(drawn == 9) == pytest.approx(0.75, abs=0.01)


def test_one_voxel_station_allows_one_centre_and_the_crop_is_exact(known):
    record, path = known
    sampler = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=6, margin_vox=1))
    batch = sampler.sample([0] * 5, ["7"] * 5, np.random.default_rng(1))
    assert batch.image.shape == (5, 2, 8, 8, 8)
    assert (batch.centre_vox == [12, 15, 18]).all() and (batch.station_code == 11).all()
    crop = (slice(8, 16), slice(11, 19), slice(14, 22))  # centre at index edge // 2 = 4
    expected_ct = np.clip((record.ct_hu[crop].astype(np.float32) + 200) / 600, 0, 1)
    np.testing.assert_allclose(batch.image[0, 0], expected_ct, rtol=1e-6)
    np.testing.assert_allclose(batch.image[0, 1], record.suv[crop] / 4.0, rtol=1e-6)


def test_windows_map_and_clip_ct_but_not_suv(known):
    _, path = known
    sampler = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=24))
    image = sampler.centroid([0], ["7"]).image[0]
    ct_row = image[0, 12, 15]  # x = 6 + k: HU = -1000 + 80 * x
    hu = -1000 + 80 * (np.arange(24) + 6)
    np.testing.assert_allclose(ct_row, np.clip((hu + 200) / 600, 0, 1), atol=1e-6)
    assert ct_row.min() == 0.0 and ct_row.max() == 1.0
    assert image[1].max() == pytest.approx(0.5 * 23 / 4)  # SUV 11.5 -> 2.875: above 1, not clipped


def test_crop_is_padded_with_zeros_outside_the_volume(known):
    record, path = known
    sampler = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=10))
    reader_scan = sampler.reader.scan(0)
    from cache.sampler import read_crop
    out = np.full((2, 10, 10, 10), 7.0, dtype=np.float32)
    read_crop(reader_scan, (0, 0, 35), sampler.settings, out)  # start (-5, -5, 30): most of it outside
    assert (out[:, :5] == 0).all() and (out[:, :, :5] == 0).all() and (out[:, :, :, 6:] == 0).all()
    inside = record.suv[0:5, 0:5, 30:36] / 4.0
    np.testing.assert_allclose(out[1, 5:, 5:, :6], inside, rtol=1e-6)


def test_station_mask_channel_marks_the_station_only(tmp_path):
    record = tiny_record()
    path = write_scan(tmp_path / "p1__s1.h5", record)
    sampler = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=12, station_mask_channel=True))
    name = record.stations[0].name
    batch = sampler.sample([0] * 4, [name] * 4, np.random.default_rng(2))
    assert batch.image.shape[1] == 3
    for b in range(4):
        start = batch.centre_vox[b] - 6
        expected = np.zeros((12, 12, 12), dtype=np.float32)
        low, high = np.maximum(start, 0), np.minimum(start + 12, record.grid.shape_zyx)
        region = record.station_labels[low[0]:high[0], low[1]:high[1], low[2]:high[2]] == record.stations[0].code
        expected[tuple(slice(lo - s, hi - s) for lo, hi, s in zip(low, high, start, strict=True))] = region
        assert np.array_equal(batch.image[b, 2], expected)
        assert record.station_labels[tuple(batch.centre_vox[b])] == record.stations[0].code


def test_centroid_patch_is_deterministic_and_centred_on_the_centroid(tmp_path):
    record = tiny_record()
    sampler = PatchSampler(CacheReader([write_scan(tmp_path / "p1__s1.h5", record)]), SamplerSettings(8))
    names = [t.name for t in record.stations]
    first = sampler.centroid([0] * len(names), names)
    second = sampler.centroid([0] * len(names), names)
    assert np.array_equal(first.image, second.image)
    expected = [np.floor(np.asarray(t.centroid_vox) + 0.5) for t in record.stations]
    assert np.array_equal(first.centre_vox, np.array(expected, dtype=np.int64))
    assert centroid_centre(sampler.reader.infos[0].stations[names[0]]) == tuple(first.centre_vox[0])


def test_wrong_buffer_is_refused(cache_file):
    sampler = PatchSampler(CacheReader([cache_file]), SamplerSettings(patch_size_vox=8))
    with pytest.raises(ValueError, match="does not fit 2 patches"):
        sampler.centroid([0, 0], ["7", "7"], out=np.empty((1, 2, 8, 8, 8), dtype=np.float32))


def test_empty_window_is_refused(cache_file):
    with pytest.raises(ValueError, match="empty intensity window"):
        PatchSampler(CacheReader([cache_file]), SamplerSettings(ct_window_low_hu=400.0, ct_window_high_hu=-200.0))


def test_a_station_missing_from_the_file_is_named(known):
    _, path = known
    sampler = PatchSampler(CacheReader([path]), SamplerSettings(patch_size_vox=4))
    with pytest.raises(KeyError, match=r"no station '4R' in the fused labels; present: 7"):
        sampler.centroid([0], ["4R"])


def test_threads_and_slots_cut_the_same_crops_into_the_slots_asked_for(tmp_path):
    record = tiny_record()
    sampler = PatchSampler(CacheReader([write_scan(tmp_path / "p1__s1.h5", record)]),
                           SamplerSettings(patch_size_vox=8, station_mask_channel=True))
    names = [t.name for t in record.stations] * 3
    centres = sampler.draw([0] * len(names), names, np.random.default_rng(4))
    alone = sampler.fill([0] * len(names), names, centres).image
    with ThreadPoolExecutor(3) as pool:
        threaded = sampler.fill([0] * len(names), names, centres, pool=pool, parts=3).image
        slots = np.arange(len(names)) * 2 + 1  # every other slot, the even ones left as they were
        out = np.full((2 * len(names), *alone.shape[1:]), 7.0, dtype=np.float32)
        placed = sampler.fill([0] * len(names), names, centres, out, slots=slots, pool=pool, parts=2).image
    assert np.array_equal(threaded, alone)
    assert placed is out and np.array_equal(out[1::2], alone) and (out[0::2] == 7.0).all()
    with pytest.raises(ValueError, match="at slots up to"):
        sampler.fill([0], names[:1], centres[:1], out[:2], slots=[2])


def test_a_batch_of_more_compressed_scans_than_max_open_reads_no_closed_file(tmp_path):
    """Compressed copies are read through h5py: a scan the reader lets go of mid-batch stays open until cut."""
    paths = [export_file(write_scan(tmp_path / f"p{i}__s.h5", tiny_record(f"p{i}", "s", seed=i)),
                         tmp_path / "compressed" / f"p{i}__s.h5", compress=True) for i in range(3)]
    settings = SamplerSettings(patch_size_vox=8)
    bounded, unbounded = PatchSampler(CacheReader(paths, max_open=1), settings), PatchSampler(CacheReader(paths),
                                                                                            settings)
    scans, names = [0, 1, 2, 0], ["7"] * 4
    centres = unbounded.centroids(scans, names)
    assert not bounded.reader.scan(0).memory_mapped
    assert np.array_equal(bounded.fill(scans, names, centres).image, unbounded.fill(scans, names, centres).image)
    assert bounded.reader.n_open == 1
