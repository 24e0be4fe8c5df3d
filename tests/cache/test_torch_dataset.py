"""The torch Dataset: one item per (scan, station), labels from the file, repeatable draws, worker processes."""

import numpy as np
import torch

from cache.sampler import SamplerSettings
from cache.torch_dataset import StationPatchDataset
from cache.writer import write_scan
from tests.cache.conftest import tiny_record


def files(tmp_path, n=2):
    return [write_scan(tmp_path / f"p{i}__s.h5", tiny_record(f"p{i}", "s", seed=i)) for i in range(n)]


def test_items_are_station_patches_with_their_labels(tmp_path):
    records = [tiny_record(f"p{i}", "s", seed=i) for i in range(2)]
    paths = files(tmp_path)
    dataset = StationPatchDataset(paths, SamplerSettings(patch_size_vox=8))
    assert len(dataset) == sum(len(r.stations) for r in records)
    sample = dataset[len(records[0].stations)]  # the first station of the second scan
    table = records[1].stations[0]
    assert sample.image.shape == (2, 8, 8, 8) and sample.image.dtype == torch.float32
    assert int(sample.scan) == 1 and int(sample.station) == table.code - 1
    assert float(sample.label) == records[1].labels.station_clinical[table.code - 1]


def test_draws_repeat_per_epoch_and_change_between_epochs(tmp_path):
    dataset = StationPatchDataset(files(tmp_path, 1), SamplerSettings(patch_size_vox=8), seed=3)
    first = [dataset[i].centre_vox for i in range(len(dataset))]
    again = [dataset[i].centre_vox for i in range(len(dataset))]
    dataset.set_epoch(1)
    other = [dataset[i].centre_vox for i in range(len(dataset))]
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(first, other, strict=True))


def test_dataloader_workers_open_their_own_files(tmp_path):
    dataset = StationPatchDataset(files(tmp_path), SamplerSettings(patch_size_vox=8), mode="centroid",
                                  stations=["7", "4R"])
    assert dataset.reader.n_open == 0
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(b.image.shape[0] for b in batches) == len(dataset) == 4
    assert batches[0].image.shape[1:] == (2, 8, 8, 8) and batches[0].label.dtype == torch.float32
    assert dataset.reader.n_open == 0  # the main process never opened a file
    direct = np.stack([dataset[i].image.numpy() for i in range(len(dataset))])
    assert np.array_equal(torch.cat([b.image for b in batches]).numpy(), direct)
