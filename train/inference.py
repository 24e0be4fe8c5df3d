"""Inference: station probabilities from the centroid patch (optionally averaged with K weight-map patches),
N-stage from the TS2/TS3 head or from the rule set, and the predictions CSV that `evaluate` reads.

Predictions CSV (`predictions_val.csv`, `predictions_test.csv` in each run's fold folder), one row per scan and
station (17 rows per scan, catalogue order):
  patient_id, scan_id, fold, split (val|test), stage (ts1|ts2|ts3), station (name), station_index (0-16),
  station_true (1, 0, -1 unknown), probability (of malignancy; empty when the station is absent from the scan's
  cache file), station_pred (1, 0, -1 when absent; threshold 0.5), tumor_side (R, L, empty), n_true (-1
  unknown), n_pred (TS1: rule-based from station_pred and the side; TS2/TS3: argmax of the head; -1 when the
  rule set cannot stage because the side is unknown), n_prob_0..n_prob_3 (TS2/TS3 head softmax; empty for TS1),
  rule_set.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.atomic import atomic_path
from cache.reader import CacheReader
from cache.sampler import PatchSampler, SamplerSettings
from cache.settings import values_from_mapping
from cache.stations import STATION_CUTOFF, stage_scans, station_calls, station_names
from train.checkpoint import load_checkpoint
from train.data import CohortPart, sampler_settings
from train.model import N_STATIONS, NStageModel, StationClassifier, build_model, encode_side
from train.settings import TrainSettings


class InferenceError(ValueError):
    """Model outputs that are not finite numbers (a damaged checkpoint or input): never read as "absent" or N0."""


def check_finite_outputs(values: np.ndarray, what: str, scan_names: Sequence[str], scans: np.ndarray) -> None:
    """Refuse NaN or infinite `values` (one per entry of `scans`), naming the scans they belong to."""
    bad = ~np.isfinite(values)
    if bad.any():
        rows = bad.reshape(len(bad), -1).any(axis=1)
        names = sorted({scan_names[i] for i in np.asarray(scans)[rows]})
        raise InferenceError(f"{int(bad.sum())} {what} are NaN or infinite (scans {', '.join(names[:5])}"
                             f"{' ...' if len(names) > 5 else ''}); the checkpoint or the input is damaged: check "
                             "the checkpoint (it is verified on load) and run python -m cache verify")


@dataclass(frozen=True)
class TrainedModel:
    """A trained network with the input it was trained on, so inference never guesses it from the layers.

    `patch`: channels (CT, SUV[, station mask]), patch edge and intensity windows of the inference patch (no
    margin); `settings`: the run's TrainSettings (stage, fold, inference samples, seed).
    """

    module: torch.nn.Module
    patch: SamplerSettings
    settings: TrainSettings

    @classmethod
    def of(cls, module: torch.nn.Module, settings: TrainSettings) -> TrainedModel:
        return cls(module, sampler_settings(settings, margin_vox=0), settings)


@dataclass(frozen=True)
class Predictions:
    """`station_prob` (scans, 17), NaN where a station is absent; `n_prob` (scans, 4) for TS2/TS3, else None;
    `n_pred` (scans,) -1 where unstageable."""

    station_prob: np.ndarray
    n_prob: np.ndarray | None
    n_pred: np.ndarray


def _autocast(device: torch.device):
    return torch.autocast(device_type=device.type, dtype=torch.float16, enabled=device.type == "cuda")


@torch.no_grad()
def _pair_logits(classifier: StationClassifier, sampler: PatchSampler, scans: np.ndarray, stations: np.ndarray,
                 device: torch.device, batch_size: int, rng: np.random.Generator | None) -> np.ndarray:
    """Logits of (scan, station) pairs: centroid patches (rng None) or one weight-map patch each."""
    names, logits = station_names(), []
    for start in range(0, len(scans), batch_size):
        s, t = scans[start:start + batch_size], stations[start:start + batch_size]
        batch = (sampler.centroid(s, [names[i] for i in t]) if rng is None
                 else sampler.sample(s, [names[i] for i in t], rng))
        with _autocast(device):
            out = classifier(torch.from_numpy(batch.image).to(device), torch.from_numpy(t.astype(np.int64)).to(device))
        logits.append(out.float().cpu().numpy())
    return np.concatenate(logits) if logits else np.zeros(0, dtype=np.float32)


def present_stations(reader: CacheReader) -> np.ndarray:
    """(scans, 17) bool: which stations each cache file of `reader` holds."""
    names = station_names()
    return np.array([[name in info.stations for name in names] for info in reader.infos],
                    dtype=bool).reshape(len(reader), N_STATIONS)


@torch.no_grad()
def predict_scans(trained: TrainedModel, reader: CacheReader, tumor_sides: Sequence[str | None], rule_set: str,
                  device: torch.device, samples: int = 0, seed: int = 0, batch_size: int = 64,
                  scan_names: Sequence[str] | None = None) -> Predictions:
    """Predictions for every scan of `reader` (cache files; `tumor_sides` aligned with them): the centroid patch,
    plus `samples` weight-map patches averaged in. TS1 stages by `rule_set`; TS2/TS3 by their head.

    `scan_names` name the scans in errors (default: the cache files).
    """
    model = trained.module.eval()
    classifier = model.classifier if isinstance(model, NStageModel) else model
    names = list(scan_names) if scan_names is not None else [str(p) for p in reader.paths]
    sampler = PatchSampler(reader, trained.patch)
    present = present_stations(reader)
    scans, stations = np.nonzero(present)
    rng = np.random.default_rng(seed)
    draws = [_pair_logits(classifier, sampler, scans, stations, device, batch_size, None)]
    draws += [_pair_logits(classifier, sampler, scans, stations, device, batch_size, rng) for _ in range(samples)]
    for d in draws:  # NaN is "absent" below: a NaN output must not pass as a station the registration missed
        check_finite_outputs(d, "station logits", names, scans)
    station_prob = np.full((len(reader), N_STATIONS), np.nan)
    station_prob[scans, stations] = np.mean([1 / (1 + np.exp(-d.astype(np.float64))) for d in draws], axis=0)
    if not isinstance(model, NStageModel):
        return Predictions(station_prob, None, stage_scans(station_calls(station_prob), tumor_sides, rule_set))
    # absent stations get the classifier's logit of a zero patch, as in training (data.ScanBatches)
    edge = trained.patch.patch_size_vox
    zero = torch.zeros(N_STATIONS, trained.patch.n_channels, edge, edge, edge, device=device)
    with _autocast(device):
        absent_logits = classifier(zero, torch.arange(N_STATIONS, device=device)).float().cpu().numpy()
    side = encode_side(list(tumor_sides), device)
    n_prob = []
    for d in draws:
        logits = np.tile(absent_logits, (len(reader), 1))
        logits[scans, stations] = d
        with _autocast(device):
            stage_logits = model(None, side, station_logits=torch.from_numpy(logits).to(device))[0]
        n_prob.append(stage_logits.float().softmax(dim=1).cpu().numpy())
    n_prob = np.mean(n_prob, axis=0)
    check_finite_outputs(n_prob, "N-stage probabilities", names, np.arange(len(reader)))
    return Predictions(station_prob, n_prob, n_prob.argmax(axis=1).astype(np.int64))


def predict(model: torch.nn.Module, part: CohortPart, settings: TrainSettings, device: torch.device,
            samples: int = 0, seed: int = 0, batch_size: int = 64) -> Predictions:
    """`predict_scans` over the scans of a fold part, staged by the part's rule set."""
    return predict_scans(TrainedModel.of(model, settings), part.reader, part.tumor_sides, part.rule_set, device,
                         samples, seed, batch_size, [f"{p}/{s}" for p, s in zip(part.patient_ids, part.scan_ids,
                                                                                 strict=True)])


def write_predictions(path: Path, part: CohortPart, predictions: Predictions, fold: int, split: str,
                      stage: str) -> None:
    """The predictions CSV described in this module's docstring, written atomically."""
    names = station_names()
    columns = ["patient_id", "scan_id", "fold", "split", "stage", "station", "station_index", "station_true",
               "probability", "station_pred", "tumor_side", "n_true", "n_pred",
               "n_prob_0", "n_prob_1", "n_prob_2", "n_prob_3", "rule_set"]
    with atomic_path(path) as temporary, open(temporary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i in range(len(part)):
            n_prob = ["" if predictions.n_prob is None else f"{p:.6f}" for p in
                      (predictions.n_prob[i] if predictions.n_prob is not None else range(4))]
            for s in range(N_STATIONS):
                prob = predictions.station_prob[i, s]
                absent = np.isnan(prob)
                writer.writerow([part.patient_ids[i], part.scan_ids[i], fold, split, stage, names[s], s,
                                 int(part.station_status[i, s]), "" if absent else f"{prob:.6f}",
                                 -1 if absent else int(prob >= STATION_CUTOFF), part.tumor_sides[i] or "",
                                 int(part.n_stage[i]), int(predictions.n_pred[i]), *n_prob, part.rule_set])


def settings_from_checkpoint(state: dict) -> TrainSettings:
    return TrainSettings(**values_from_mapping(TrainSettings, state["settings"], "checkpoint settings"))


def load_trained(checkpoint: str | Path, device: torch.device | str = "cpu") -> tuple[torch.nn.Module, TrainSettings]:
    """A trained model (eval mode) and its settings from a run's best.pt/last.pt, or a fold folder (best.pt)."""
    path = Path(checkpoint)
    state = load_checkpoint(path / "best.pt" if path.is_dir() else path, map_location=device)
    settings = settings_from_checkpoint(state)
    model = build_model(settings).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), settings


def load_model(checkpoint: str | Path, device: torch.device | str = "cpu") -> TrainedModel:
    """`load_trained` as a `TrainedModel` (the network with its input description)."""
    module, settings = load_trained(checkpoint, device)
    return TrainedModel.of(module, settings)
