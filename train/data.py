"""Training data over the cache: the scans of a fold part, epoch plans with oversampling, and batch datasets.

An epoch plan is made in the main process from the run's saved numpy Generator: a list of `BatchRequest`s, each
the items of one batch plus its own seed. `loader` turns the requests into batches with
`cache.sampler.PatchSampler` (weight-map centres drawn from `default_rng(request.seed)`), its threads cutting the
crops into reused buffers while the model trains (train/batch_stream.py), so the batches do not depend on the
number of threads, and a resumed run draws exactly what an uninterrupted one would.

TS1 items are (scan, station) pairs with a known station status (stations absent from a scan's cache file are
left out); positives are oversampled to half of each epoch. TS2/TS3 items are scans, each with all 17 station
patches (a station absent from the cache file gives a zero patch and an unknown status); N-stage classes are
oversampled to equal shares, scans of unknown N-stage drawn at their share of the part. A scan whose tumour
side is unknown keeps its N-stage terms and station BCE; only its pseudo-loss is undefined (counted in
`CohortPart.unknown_side`).

A part may pool the scans of several datasets (a study, `cache.dataset.Study`). A scan of a dataset whose
config says `station_labels = false` has every station status unknown (-1) and `station_labelled` False: it is
no TS1 item, adds nothing to the station BCE and no station metric, and keeps its N-stage terms. (Its manifest's
"N0, no station list" would otherwise read as "every station benign", true only where stations are labelled.)
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np
import torch

from cache.dataset import DatasetConfig, StudyRow
from cache.manifest import ManifestRow
from cache.reader import CacheReader
from cache.sampler import PatchSampler, SamplerSettings
from cache.schema import KEY_SEPARATOR, cache_file_name, rebuild_command
from cache.stations import station_names
from train.batch_stream import BatchStream
from train.losses import group_masks, pseudo_targets
from train.model import encode_side
from train.settings import TrainSettings

N_STATIONS = len(station_names())


class MissingCacheError(FileNotFoundError):
    """Scans of the manifest without a cache file."""


@dataclass(frozen=True)
class CohortPart:
    """Scans of one part of a fold (train, val or test): cache files and manifest labels, aligned by position.

    `n_stage` is -1 where unknown; `station_status` (scans, 17) is 1/0/-1 (unknown); `present` (scans, 17) says
    which stations the scan's cache file holds; `datasets` names each scan's dataset; `station_labelled`
    (scans,) is False for scans of a dataset without trusted station labels (their status is all -1).
    """

    reader: CacheReader
    patient_ids: tuple[str, ...]
    scan_ids: tuple[str, ...]
    tumor_sides: tuple[str | None, ...]
    n_stage: np.ndarray
    station_status: np.ndarray
    present: np.ndarray
    rule_set: str
    datasets: tuple[str, ...]
    station_labelled: np.ndarray

    def __len__(self) -> int:
        return len(self.scan_ids)

    @property
    def unknown_side(self) -> int:
        return sum(side is None for side in self.tumor_sides)


def open_part(config: DatasetConfig, rows: list[ManifestRow], patients: tuple[str, ...],
              expected: dict[str, dict]) -> CohortPart:
    """The cache files of `patients`' scans of one dataset (see `open_study_part`)."""
    return open_study_part([StudyRow(config, r, r.patient_id) for r in rows], patients, expected)


def open_study_part(rows: list[StudyRow], patients: tuple[str, ...], expected: dict[str, dict]) -> CohortPart:
    """The cache files of `patients`' scans (pool ids), refusing missing files and files built with other
    settings (`expected`: cache.build_settings.expected_settings of the current build settings)."""
    rule_sets = {r.member.rule_set for r in rows}
    assert len(rule_sets) == 1, rule_sets  # cache.dataset.load_study refuses members of different rule sets
    wanted = set(patients)
    rows = sorted((r for r in rows if r.patient_id in wanted), key=lambda r: f"{r.patient_id}{KEY_SEPARATOR}"
                                                                              f"{r.row.scan_id}")
    paths = [r.member.cache_dir / cache_file_name(r.row.patient_id, r.row.scan_id) for r in rows]
    missing = [(r.member.name, str(p)) for r, p in zip(rows, paths, strict=True) if not p.is_file()]
    if missing:
        names = sorted({name for name, _ in missing})
        raise MissingCacheError(
            f"{len(missing)} scan(s) of the manifest have no cache file, e.g. "
            f"{', '.join(p for _, p in missing[:5])}; build them with: "
            + "; ".join(f"python -m preprocess --dataset {n} (or {rebuild_command(n)})" for n in names)
        )
    # Every file stays open: random batches touch every scan, and a reopen rereads metadata and maps the file
    # again (ten times slower past the reader's default of 64). A mapped file holds one descriptor, no HDF5 handle.
    reader = CacheReader(paths, expected, max_open=None)
    present = np.array([[name in info.stations for name in station_names()] for info in reader.infos], dtype=bool)
    labelled = np.array([r.member.station_labels for r in rows], dtype=bool)
    status = np.stack([r.row.station_status(r.member.label_column) for r in rows]).astype(np.int8) if rows else (
        np.zeros((0, N_STATIONS), dtype=np.int8))
    status[~labelled] = -1
    return CohortPart(
        reader=reader,
        patient_ids=tuple(r.patient_id for r in rows),
        scan_ids=tuple(r.row.scan_id for r in rows),
        tumor_sides=tuple(r.row.tumor_side for r in rows),
        n_stage=np.array([-1 if (n := r.row.n_stage(r.member.label_column)) is None else n for r in rows],
                         dtype=np.int64),
        station_status=status,
        present=present.reshape(len(rows), N_STATIONS),
        rule_set=rule_sets.pop(),
        datasets=tuple(r.member.name for r in rows),
        station_labelled=labelled,
    )


def station_pairs(part: CohortPart) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TS1 items: (scan positions, station indices, labels) of every present station with a known status
    (never a scan without trusted station labels)."""
    usable = part.present & (part.station_status >= 0) & part.station_labelled[:, None]
    scans, stations = np.nonzero(usable)
    return scans, stations, part.station_status[scans, stations].astype(np.float32)


@dataclass(frozen=True)
class BatchRequest:
    """One batch to assemble: item positions (pairs for TS1, scans for TS2/TS3) and the seed of its draws."""

    seed: int
    items: tuple[int, ...]


def balanced_weights(classes: np.ndarray) -> np.ndarray:
    """Sampling probabilities giving every class present the same total share (minority oversampled).

    A negative class is unknown (a scan without N-stage): those items keep their share of the cohort and are no
    class of their own; one unknown scan among many would otherwise fill a class's share of every epoch.
    """
    known = classes >= 0
    weights = np.full(len(classes), 1.0 / len(classes))
    if known.any():
        values, inverse, counts = np.unique(classes[known], return_inverse=True, return_counts=True)
        weights[known] = known.mean() / (len(values) * counts[inverse])
    return weights / weights.sum()


def epoch_plan(classes: np.ndarray, samples: int, batch_size: int, rng: np.random.Generator,
               world_size: int = 1) -> list[BatchRequest]:
    """Full batches of items drawn with class-balanced probabilities (with replacement), >= `samples` items.

    The number of batches is a multiple of `world_size`, so every rank takes the same number of steps.
    """
    if len(classes) == 0:
        raise ValueError("no training items: no scan of the training part has a usable label")
    n_batches = -(-max(1, -(-samples // batch_size)) // world_size) * world_size
    drawn = rng.choice(len(classes), size=n_batches * batch_size, replace=True, p=balanced_weights(classes))
    seeds = rng.integers(0, 2**63 - 1, size=n_batches)
    return [BatchRequest(int(seeds[b]), tuple(int(i) for i in drawn[b * batch_size:(b + 1) * batch_size]))
            for b in range(n_batches)]


def sampler_settings(settings: TrainSettings, margin_vox: int) -> SamplerSettings:
    """Crop settings of TrainSettings; `margin_vox` extra voxels per side (0 for inference patches)."""
    return SamplerSettings(
        patch_size_vox=settings.patch_size_vox, margin_vox=margin_vox, ct_window_low_hu=settings.ct_window_low_hu,
        ct_window_high_hu=settings.ct_window_high_hu, suv_window_high=settings.suv_window_high,
        station_mask_channel=settings.station_mask_channel,
    )


@dataclass(frozen=True)
class StationBatch:
    """TS1 batch: `crops` (B, C, E, E, E), `station` (B,) indices 0..16, `label` (B,) 0/1."""

    crops: torch.Tensor
    station: torch.Tensor
    label: torch.Tensor

    def pin_memory(self) -> StationBatch:
        return StationBatch(self.crops.pin_memory(), self.station.pin_memory(), self.label.pin_memory())


@dataclass(frozen=True)
class ScanBatch:
    """TS2/TS3 batch: `crops` (B, 17, C, E, E, E); `side` (B, 2) one-hot; `n_stage` (B,) -1 unknown;
    `station_status` (B, 17) 1/0/-1; `masks` (B, 3, 17) station groups of the side; `targets` (B, 3) pseudo-labels;
    `station_labelled` (B,) bool, False for a scan whose dataset has no trusted station labels."""

    crops: torch.Tensor
    side: torch.Tensor
    n_stage: torch.Tensor
    station_status: torch.Tensor
    masks: torch.Tensor
    targets: torch.Tensor
    station_labelled: torch.Tensor

    def pin_memory(self) -> ScanBatch:
        return ScanBatch(*(getattr(self, f).pin_memory() for f in self.__dataclass_fields__))


def _centres(sampler: PatchSampler, scans: np.ndarray, stations: list[str], patch_sampling: str,
             seed: int) -> np.ndarray:
    """Training crop centres: weight-map draws from `default_rng(seed)` ("weight_map") or the station centroids."""
    if patch_sampling == "centroid":
        return sampler.centroids(scans, stations)
    return sampler.draw(scans, stations, np.random.default_rng(seed))


class StationBatches(torch.utils.data.Dataset):
    """TS1: a BatchRequest over `station_pairs` -> StationBatch of weight-map-sampled (or centroid) crops."""

    def __init__(self, part: CohortPart, crop: SamplerSettings, patch_sampling: str = "weight_map"):
        self.sampler = PatchSampler(part.reader, crop)
        self.scans, self.stations, self.labels = station_pairs(part)
        self.patch_sampling = patch_sampling

    def __len__(self) -> int:
        return len(self.labels)

    def crop_shape(self, n_items: int) -> tuple[int, ...]:
        """Shape of the crops of a batch of `n_items` items: (B, C, E, E, E)."""
        return (n_items, *self.sampler.buffer(0).shape[1:])

    def assemble(self, request: BatchRequest, crops: torch.Tensor, pool: Executor | None = None,
                 parts: int = 1) -> StationBatch:
        """The batch of `request`, its crops cut into `crops` (float32, `crop_shape`; `parts` chunks on `pool`)."""
        items = np.asarray(request.items)
        names = station_names()
        scans, stations = self.scans[items], [names[s] for s in self.stations[items]]
        centres = _centres(self.sampler, scans, stations, self.patch_sampling, request.seed)
        self.sampler.fill(scans, stations, centres, crops.numpy(), pool=pool, parts=parts)
        return StationBatch(crops, torch.from_numpy(self.stations[items].astype(np.int64)),
                            torch.from_numpy(self.labels[items]))

    def __getitem__(self, request: BatchRequest) -> StationBatch:
        return self.assemble(request, torch.empty(self.crop_shape(len(request.items))))


def scan_targets(part: CohortPart, scans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group masks (B, 3, 17) and pseudo-label targets (B, 3) of scans; empty/unknown for an unknown side."""
    masks = np.stack([group_masks(part.tumor_sides[i], part.rule_set) for i in scans])
    targets = np.stack([pseudo_targets(int(part.n_stage[i]), part.tumor_sides[i]) for i in scans])
    return masks, targets


def scan_batch(part: CohortPart, scans: np.ndarray, crops: torch.Tensor) -> ScanBatch:
    """The ScanBatch of `scans` around `crops`: side, N-stage, station status (-1 where a station is absent),
    station groups, pseudo-labels and whether the scan's station labels are trusted."""
    status = np.where(part.present[scans], part.station_status[scans], -1).astype(np.int64)
    masks, targets = scan_targets(part, scans)
    return ScanBatch(crops, encode_side([part.tumor_sides[i] for i in scans]),
                     torch.from_numpy(part.n_stage[scans]), torch.from_numpy(status),
                     torch.from_numpy(masks), torch.from_numpy(targets),
                     torch.from_numpy(part.station_labelled[scans]))


class ScanBatches(torch.utils.data.Dataset):
    """TS2/TS3: a BatchRequest over scans -> ScanBatch with all 17 station crops per scan."""

    def __init__(self, part: CohortPart, crop: SamplerSettings, patch_sampling: str = "weight_map"):
        self.part = part
        self.sampler = PatchSampler(part.reader, crop)
        self.patch_sampling = patch_sampling

    def __len__(self) -> int:
        return len(self.part)

    def crop_shape(self, n_items: int) -> tuple[int, ...]:
        """Shape of the crops of a batch of `n_items` scans: (B, 17, C, E, E, E)."""
        return (n_items, N_STATIONS, *self.sampler.buffer(0).shape[1:])

    def assemble(self, request: BatchRequest, crops: torch.Tensor, pool: Executor | None = None,
                 parts: int = 1) -> ScanBatch:
        """The batch of `request`, its crops cut into `crops` (`crop_shape`); absent stations get zero crops."""
        scans = np.asarray(request.items)
        part, names = self.part, station_names()
        present = part.present[scans]
        slots = crops.numpy().reshape(-1, *crops.shape[2:])  # (B * 17, C, E, E, E), a view
        slots[np.flatnonzero(~present.ravel())] = 0.0
        rows, columns = np.nonzero(present)
        if len(rows):
            stations = [names[c] for c in columns]
            centres = _centres(self.sampler, scans[rows], stations, self.patch_sampling, request.seed)
            self.sampler.fill(scans[rows], stations, centres, slots, slots=rows * N_STATIONS + columns, pool=pool,
                              parts=parts)
        return scan_batch(part, scans, crops)

    def __getitem__(self, request: BatchRequest) -> ScanBatch:
        return self.assemble(request, torch.empty(self.crop_shape(len(request.items))))


def loader(dataset: StationBatches | ScanBatches, plan: list[BatchRequest], num_workers: int | str,
           pin_memory: bool) -> BatchStream:
    """The batches of `plan`, cut by `num_workers` threads ("auto": as many as keep the model fed) into reused
    (pinned when `pin_memory`) buffers; each batch is valid until the next is requested (see train/batch_stream.py)."""
    return BatchStream(dataset, plan, num_workers, pin_memory)
