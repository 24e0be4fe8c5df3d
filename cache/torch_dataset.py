"""A `torch.utils.data.Dataset` of station patches with labels, over cache files.

Usable as it is by any PyTorch or MONAI loop:

    dataset = StationPatchDataset(cache_files(folder), SamplerSettings(patch_size_vox=64))
    loader = torch.utils.data.DataLoader(dataset, batch_size=64, shuffle=True, num_workers=4)
    for batch in loader:        # a StationSample of batched tensors
        logits = model(batch.image, batch.station)
        loss = bce(logits[batch.label >= 0], batch.label[batch.label >= 0])

Item i is one (scan, station) pair of the files. With `mode="random"` its centre is drawn from the station's
weight map by a generator seeded from (seed, epoch, i), so a run is repeatable whatever the number of workers
(call `set_epoch` each epoch); `mode="centroid"` gives the deterministic inference patch. Files are opened
lazily in each worker.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch

from cache.reader import CacheReader
from cache.sampler import PatchSampler, SamplerSettings

LabelColumn = Literal["cN", "pN"]


class StationSample(NamedTuple):
    """One patch: `image` float32 (C, E, E, E) (CT, SUV[, station mask], windowed); `label` float32 scalar
    (1 malignant, 0 benign, -1 unknown); `station` int64 catalogue index (code - 1); `scan` int64 scan id;
    `centre_vox` int64 (3,) crop centre (z, y, x). Batched by the default collate into the same fields."""

    image: torch.Tensor
    label: torch.Tensor
    station: torch.Tensor
    scan: torch.Tensor
    centre_vox: torch.Tensor


class StationPatchDataset(torch.utils.data.Dataset):
    """Station patches of cache files, one item per (scan, station) present in the files.

    `stations` limits the items to these station names; `label_column` picks the clinical or pathological
    station labels; `expected_settings` makes the reader refuse files built with other settings.
    """

    def __init__(self, paths: Sequence[str | Path], settings: SamplerSettings | None = None,
                 label_column: LabelColumn = "cN", mode: Literal["random", "centroid"] = "random", seed: int = 0,
                 stations: Sequence[str] | None = None, expected_settings: Mapping[str, Mapping] | None = None,
                 max_open: int = 64):
        if mode not in ("random", "centroid"):
            raise ValueError(f"mode must be 'random' or 'centroid', got {mode!r}")
        if label_column not in ("cN", "pN"):
            raise ValueError(f"label_column must be 'cN' or 'pN', got {label_column!r}")
        self.reader = CacheReader(paths, expected_settings, max_open=max_open)
        self.sampler = PatchSampler(self.reader, settings or SamplerSettings())
        self.mode, self.seed, self.epoch = mode, seed, 0
        wanted = None if stations is None else set(stations)
        self.items = [(i, name) for i, name in self.sampler.pairs() if wanted is None or name in wanted]
        field_name = "station_clinical" if label_column == "cN" else "station_pathological"
        self.labels = np.array([getattr(self.reader.infos[i].labels, field_name)[
            self.reader.infos[i].stations[name].code - 1] for i, name in self.items], dtype=np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Draw other centres in the next epoch (the draws of epoch e are the same in every run)."""
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> StationSample:
        scan, name = self.items[i]
        if self.mode == "random":
            rng = np.random.default_rng([self.seed, self.epoch, i])
            batch = self.sampler.sample([scan], [name], rng)
        else:
            batch = self.sampler.centroid([scan], [name])
        return StationSample(
            image=torch.from_numpy(batch.image[0]),
            label=torch.tensor(self.labels[i]),
            station=torch.tensor(batch.station_code[0] - 1, dtype=torch.int64),
            scan=torch.tensor(scan, dtype=torch.int64),
            centre_vox=torch.from_numpy(batch.centre_vox[0]),
        )
