"""The threaded batch stream: same batches whatever the threads, errors reach the loop, the auto thread count."""

import threading
import time

import numpy as np
import pytest
import torch

from cache.sampler import draw_centres, read_crop
from cache.stations import station_names
from tests.train.test_data import tiny_part
from train.batch_stream import AutoThreads, threads_setting, usable_cores
from train.data import BatchRequest, ScanBatches, StationBatches, epoch_plan, loader, sampler_settings, station_pairs
from train.settings import TrainSettings, parse_train_settings

CROP = sampler_settings(TrainSettings(channels=(4, 8), dropout=(0.0, 0.0), patch_size_vox=8, n_folds=3), 2)


def reference_crops(part, scans: np.ndarray, stations: np.ndarray, seed: int) -> np.ndarray:
    """The crops as the code before the threaded stream cut them: one centre per item drawn in order from
    default_rng(seed), each crop read into a fresh buffer."""
    rng, names = np.random.default_rng(seed), station_names()
    crops = np.empty((len(scans), CROP.n_channels, *(CROP.crop_edge_vox,) * 3), dtype=np.float32)
    for b, (scan_id, station) in enumerate(zip(scans, stations, strict=True)):
        scan = part.reader.scan(int(scan_id))
        flat = int(draw_centres(*scan.table(names[station]), 1, rng)[0])
        centre = np.unravel_index(flat, scan.info.grid.shape_zyx)
        read_crop(scan, centre, CROP, crops[b], scan.info.stations[names[station]].code)
    return crops


@pytest.mark.parametrize("threads", [0, 1, 3, "auto"])
def test_station_batches_are_the_reference_batches_whatever_the_threads(tiny_dataset, threads):
    part = tiny_part(tiny_dataset)
    dataset = StationBatches(part, CROP)
    scans, stations, labels = station_pairs(part)
    plan = epoch_plan(labels, 40, 8, np.random.default_rng(3))
    seen = 0
    for request, batch in zip(plan, loader(dataset, plan, threads, pin_memory=False), strict=True):
        items = np.asarray(request.items)
        assert np.array_equal(batch.crops.numpy(), reference_crops(part, scans[items], stations[items], request.seed))
        assert batch.station.tolist() == stations[items].tolist() and batch.label.tolist() == labels[items].tolist()
        seen += 1
    assert seen == len(plan) == 5


@pytest.mark.parametrize("threads", [0, 2])
def test_scan_batches_are_the_reference_batches_with_zero_crops_for_absent_stations(tiny_dataset, threads):
    part = tiny_part(tiny_dataset)
    dataset = ScanBatches(part, CROP)
    plan = [BatchRequest(seed=s, items=items) for s, items in ((5, (0, 11, 3)), (6, (4, 4, 9)), (7, (1, 2, 10)))]
    for request, batch in zip(plan, loader(dataset, plan, threads, pin_memory=False), strict=True):
        scans = np.asarray(request.items)
        rows, columns = np.nonzero(part.present[scans])
        expected = np.zeros(batch.crops.shape, dtype=np.float32)  # absent stations: zero crops
        expected[rows, columns] = reference_crops(part, scans[rows], columns, request.seed)
        assert np.array_equal(batch.crops.numpy(), expected)
        assert len(rows) < scans.size * 17 and not expected[~part.present[scans]].any()


def test_each_batch_is_cut_into_one_of_two_reused_buffers(tiny_dataset):
    part = tiny_part(tiny_dataset)
    dataset = StationBatches(part, CROP)
    plan = epoch_plan(station_pairs(part)[2], 32, 8, np.random.default_rng(0))
    pointers = {batch.crops.data_ptr() for batch in loader(dataset, plan, 1, pin_memory=False)}
    assert len(plan) == 4 and pointers == {t.data_ptr() for t in dataset.ring}
    again = {batch.crops.data_ptr() for batch in loader(dataset, plan, 2, pin_memory=False)}
    assert again == pointers  # the next epoch reuses them


@pytest.mark.parametrize("threads", [0, 2])
def test_an_error_while_cutting_reaches_the_training_loop(tiny_dataset, threads):
    dataset = StationBatches(tiny_part(tiny_dataset), CROP)
    plan = [BatchRequest(1, (0, 1)), BatchRequest(2, (0, 10_000))]  # the second names an item that is not there
    batches = iter(loader(dataset, plan, threads, pin_memory=False))
    assert next(batches).crops.shape[0] == 2
    with pytest.raises(IndexError):
        next(batches)


def test_leaving_the_loop_early_stops_the_producer(tiny_dataset):
    dataset = StationBatches(tiny_part(tiny_dataset), CROP)
    plan = [BatchRequest(i, (0, 1, 2)) for i in range(50)]
    batches = iter(loader(dataset, plan, 2, pin_memory=False))
    next(batches)
    batches.close()  # runs the stream's cleanup as a `break` out of a for loop does
    assert not [t for t in threading.enumerate() if t.name == "lnstage-batches"]


@pytest.mark.parametrize("threads", [0, 2])
def test_a_batch_stays_as_it_was_cut_until_the_next_is_requested(tiny_dataset, threads):
    """Its slot is refilled only once the loop asks for the following batch, never while the loop holds it."""
    part = tiny_part(tiny_dataset)
    dataset = StationBatches(part, CROP)
    plan = epoch_plan(station_pairs(part)[2], 48, 8, np.random.default_rng(2))
    for batch in loader(dataset, plan, threads, pin_memory=False):
        snap = batch.crops.clone()
        time.sleep(0.05)  # the producer is free to run meanwhile
        assert torch.equal(batch.crops, snap)


def test_a_second_stream_over_the_same_buffers_is_refused_while_the_first_runs(tiny_dataset):
    dataset = StationBatches(tiny_part(tiny_dataset), CROP)
    plan = [BatchRequest(i, (0, 1, 2)) for i in range(6)]
    first = iter(loader(dataset, plan, 2, pin_memory=False))
    next(first)
    with pytest.raises(RuntimeError, match="still being iterated.*finish or close it"):
        next(iter(loader(dataset, plan, 0, pin_memory=False)))
    assert next(first).crops.shape[0] == 3  # the first goes on
    first.close()
    assert len(list(loader(dataset, plan, 0, pin_memory=False))) == 6  # once it is closed, the next may start


def test_auto_adds_threads_while_the_loop_waits_and_drops_them_while_the_producer_idles():
    auto = AutoThreads(most=3)
    for _ in range(10):
        auto.update(cut_s=1.0, loop_wait_s=0.5, producer_wait_s=0.0)
    assert auto.threads == 3  # never above the cores
    for _ in range(10):
        auto.update(cut_s=0.3, loop_wait_s=0.0, producer_wait_s=1.0)
    assert auto.threads == 1
    steady = AutoThreads(most=4, start=2)
    for _ in range(20):  # one thread fewer would take 0.6 s, more than cut + idle: keep two
        steady.update(cut_s=0.3, loop_wait_s=0.0, producer_wait_s=0.2)
    assert steady.threads == 2


def test_num_workers_takes_a_count_or_auto():
    assert threads_setting("auto") == "auto" and threads_setting(3) == 3 and threads_setting("2") == 2
    assert parse_train_settings(["ts1", "--num-workers", "auto"]).num_workers == "auto"
    assert parse_train_settings(["ts1", "--num-workers", "4"]).num_workers == 4
    with pytest.raises(ValueError, match="num_workers=-1.*'auto'"):
        TrainSettings(num_workers=-1)



@pytest.mark.gpu
def test_pinned_buffers_copied_without_blocking_reach_the_device_intact(tiny_dataset):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    part = tiny_part(tiny_dataset)
    dataset = StationBatches(part, CROP)
    scans, stations, labels = station_pairs(part)
    plan = epoch_plan(labels, 64, 8, np.random.default_rng(5))
    on_device = [batch.crops.to("cuda", non_blocking=True) for batch in loader(dataset, plan, 2, pin_memory=True)]
    assert all(t.is_pinned() for t in dataset.ring)
    for request, crops in zip(plan, on_device, strict=True):
        items = np.asarray(request.items)
        assert np.array_equal(crops.cpu().numpy(), reference_crops(part, scans[items], stations[items], request.seed))


def test_auto_shares_the_cores_between_the_ranks_of_a_node(monkeypatch):
    alone = usable_cores()
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(2 * alone))
    assert usable_cores() == 1  # never below one thread
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert usable_cores() == alone
