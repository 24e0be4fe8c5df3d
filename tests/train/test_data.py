import csv
import dataclasses
import shutil

import numpy as np
import pytest

from cache.build_settings import BuildSettings, build_settings_for, expected_settings
from cache.dataset import load_dataset
from cache.manifest import read_manifest, write_manifest
from cache.reader import StaleCacheError
from cache.sampler import PatchSampler, SamplerSettings
from cache.schema import cache_file_name
from tests.train.conftest import write_tiny_cohort
from train.data import (
    BatchRequest,
    MissingCacheError,
    ScanBatches,
    StationBatches,
    balanced_weights,
    epoch_plan,
    open_part,
    sampler_settings,
    station_pairs,
)
from train.settings import TrainSettings


def tiny_part(dataset, expected=None):
    config = load_dataset(str(dataset))
    rows = list(read_manifest(config.manifest_path, config.root, check_files=False).rows)
    expected = expected or expected_settings(build_settings_for(str(dataset)))
    return open_part(config, rows, tuple(r.patient_id for r in rows), expected)


def test_oversampling_draws_positive_and_negative_stations_equally(tiny_dataset):
    part = tiny_part(tiny_dataset)
    labels = station_pairs(part)[2]
    assert labels.mean() < 0.3  # the cohort is imbalanced
    plan = epoch_plan(labels, 4000, 64, np.random.default_rng(0))
    drawn = labels[np.concatenate([r.items for r in plan])]
    assert abs(drawn.mean() - 0.5) < 0.03


def test_balanced_weights_give_every_class_the_same_share():
    classes = np.array([0] * 90 + [1] * 9 + [3])
    weights = balanced_weights(classes)
    assert [weights[classes == c].sum() for c in (0, 1, 3)] == pytest.approx([1 / 3] * 3)


def test_scans_of_unknown_n_stage_are_drawn_at_their_share_not_as_a_class(tmp_path):
    """Two of 12 tiny scans without an N-stage in the manifest: a sixth of a TS2 epoch, not a fifth (a class
    among N0-N3) or more; the known stages share the rest equally."""
    config = write_tiny_cohort(tmp_path)
    rows = list(csv.DictReader(open(tmp_path / "manifest.csv", newline="")))
    for row in rows[:2]:
        row["n_clinical"] = ""
    write_manifest(tmp_path / "manifest.csv", rows)
    n_stage = tiny_part(config).n_stage
    assert (n_stage == -1).sum() == 2 and set(n_stage) == {-1, 0, 1, 2, 3}
    plan = epoch_plan(n_stage, 12_000, 60, np.random.default_rng(0))
    drawn = n_stage[np.concatenate([r.items for r in plan])]
    assert (drawn == -1).mean() == pytest.approx(2 / 12, abs=0.01)
    for stage in range(4):
        assert (drawn == stage).mean() == pytest.approx(10 / 12 / 4, abs=0.01)


def test_epoch_plan_gives_every_rank_the_same_number_of_full_batches():
    plan = epoch_plan(np.array([0, 1, 1]), samples=10, batch_size=4, rng=np.random.default_rng(0), world_size=2)
    assert len(plan) == 4 and all(len(r.items) == 4 for r in plan)
    again = epoch_plan(np.array([0, 1, 1]), samples=10, batch_size=4, rng=np.random.default_rng(0), world_size=2)
    assert plan == again


def test_batches_depend_only_on_the_request(tiny_dataset):
    part = tiny_part(tiny_dataset)
    settings = TrainSettings(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=8, n_folds=3)
    dataset = StationBatches(part, sampler_settings(settings, 2))
    request = BatchRequest(seed=7, items=(0, 3, 5))
    first, second = dataset[request], dataset[request]
    assert first.crops.shape == (3, 2, 12, 12, 12)
    assert np.array_equal(first.crops.numpy(), second.crops.numpy())
    scans = ScanBatches(part, sampler_settings(settings, 2))[BatchRequest(seed=1, items=(0, 11))]
    assert scans.crops.shape == (2, 17, 2, 12, 12, 12)
    assert (scans.station_status[:, 0] == -1).all()  # 1L is absent from the tiny scans: unknown
    assert scans.side.tolist() == [[1, 0], [0, 0]]  # P11 has an unknown tumour side
    assert (scans.targets[1] == -1).all() and not scans.masks[1].any()


def test_missing_cache_file_is_an_error_naming_the_fix(tiny_dataset):
    config = load_dataset(str(tiny_dataset))
    rows = list(read_manifest(config.manifest_path, config.root, check_files=False).rows)
    renamed = config.cache_dir / "P00__S00.h5"
    renamed.rename(renamed.with_suffix(".moved"))
    try:
        with pytest.raises(MissingCacheError, match="P00__S00.h5.*python -m preprocess"):
            open_part(config, rows, ("P00",), expected_settings(build_settings_for(str(tiny_dataset))))
    finally:
        renamed.with_suffix(".moved").rename(renamed)


def test_cache_built_with_other_settings_is_refused(tiny_dataset):
    other = expected_settings(BuildSettings(spacing_mm=1.0, registration_preset="demo"))
    with pytest.raises(StaleCacheError, match="spacing_mm"):
        tiny_part(tiny_dataset, other)


def test_centroid_patch_sampling_ignores_the_seed_and_weight_map_sampling_does_not(tiny_dataset):
    part = tiny_part(tiny_dataset)
    settings = TrainSettings(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=8, n_folds=3)
    crop = sampler_settings(settings, 2)
    items = tuple(range(12))
    fixed = StationBatches(part, crop, "centroid")
    assert np.array_equal(fixed[BatchRequest(1, items)].crops.numpy(), fixed[BatchRequest(2, items)].crops.numpy())
    drawn = StationBatches(part, crop, "weight_map")
    assert not np.array_equal(drawn[BatchRequest(1, items)].crops.numpy(), drawn[BatchRequest(2, items)].crops.numpy())
    scans = ScanBatches(part, crop, "centroid")
    assert np.array_equal(scans[BatchRequest(1, (0, 4))].crops.numpy(), scans[BatchRequest(9, (0, 4))].crops.numpy())


def test_a_part_of_more_scans_than_the_readers_default_keeps_every_scan_open(tmp_path):
    """Random batches touch every scan: past 64 open files the reader used to close and reopen them (rereading
    metadata and mapping the file again), about ten times slower."""
    config_path = str(write_tiny_cohort(tmp_path))
    config = load_dataset(config_path)
    first = read_manifest(config.manifest_path, config.root, check_files=False).rows[0]
    source = config.cache_dir / cache_file_name(first.patient_id, first.scan_id)
    rows = [dataclasses.replace(first, patient_id=f"Q{i:02d}", scan_id="S0") for i in range(70)]
    for row in rows:
        shutil.copyfile(source, config.cache_dir / cache_file_name(row.patient_id, row.scan_id))
    part = open_part(config, rows, tuple(r.patient_id for r in rows),
                     expected_settings(build_settings_for(config_path)))
    sampler = PatchSampler(part.reader, SamplerSettings(patch_size_vox=8))
    first_pass = [part.reader.scan(i) for i in range(len(part))]
    sampler.sample(list(range(len(part))), ["7"] * len(part), np.random.default_rng(0))
    assert part.reader.n_open == 70
    assert all(part.reader.scan(i) is scan for i, scan in enumerate(first_pass))  # none closed and reopened
