"""The station classifier of the paper's Fig. 3 and the TS2/TS3 N-stage head over all 17 stations.

Patches are (batch, channels, z, y, x): CT and SUV windowed to [0, 1], optionally the binary station mask.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import minimize_scalar
from torch import nn

N_STATIONS = 17
N_STAGES = 4
SIDE_CODES = {"R": 0, "L": 1}  # tumour side -> index of its one-hot entry; unknown side encodes as (0, 0)
SIDE_PRIOR = 0.5  # an unknown side is either with equal probability: the head's stage probabilities are averaged


NORMS = {"instance": nn.InstanceNorm3d, "batch": nn.BatchNorm3d}


def conv_block(in_channels: int, out_channels: int, dropout: float, norm: str = "instance") -> nn.Sequential:
    """Conv3d k3 (no bias) -> norm -> Dropout3d -> MaxPool3d(2) -> ReLU; halves each edge.

    "instance" (the paper's) standardises every channel over its own patch, so a feature's absolute level (how
    hot a node is in SUV) survives only relative to the rest of the patch; "batch" keeps it (running statistics
    at inference).
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {sorted(NORMS)}, got {norm!r}")
    return nn.Sequential(
        nn.Conv3d(in_channels, out_channels, kernel_size=3, padding=1, bias=False),
        NORMS[norm](out_channels),
        nn.Dropout3d(dropout),
        nn.MaxPool3d(2),
        nn.ReLU(inplace=True),
    )


class StationClassifier(nn.Module):
    """Malignancy logit of one station patch; the station identity joins the image features at the end.

    `station_encoding`: "index" (the paper's, the default: the scalar station index / 16 in [0, 1]) or
    "embedding" (a learned vector per station); `norm`: the normalisation of every block (see `conv_block`).
    """

    def __init__(
        self,
        in_channels: int = 2,
        channels: tuple[int, ...] = (8, 16, 32, 64, 128, 256),
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.2, 0.2, 0.2),
        patch_size_vox: int = 64,
        station_encoding: str = "index",
        embedding_dim: int = 8,
        norm: str = "instance",
    ):
        super().__init__()
        assert len(channels) == len(dropout)
        blocks, previous = [], in_channels
        for out, rate in zip(channels, dropout, strict=True):
            blocks.append(conv_block(previous, out, rate, norm))
            previous = out
        self.features = nn.Sequential(*blocks)
        edge = patch_size_vox // 2 ** len(channels)
        self.station_encoding = station_encoding
        if station_encoding == "embedding":
            self.embedding = nn.Embedding(N_STATIONS, embedding_dim)
            station_dim = embedding_dim
        elif station_encoding == "index":
            self.embedding = None
            station_dim = 1
        else:
            raise ValueError(f"station_encoding must be 'embedding' or 'index', got {station_encoding!r}")
        self.classifier = nn.Linear(channels[-1] * edge**3 + station_dim, 1)
        # Channels-last 3D: 1.3x faster training steps and 1.7x faster inference on 2 CPU cores (oneDNN)
        self.to(memory_format=torch.channels_last_3d)

    def encode_station(self, station_index: torch.Tensor) -> torch.Tensor:
        if self.embedding is not None:
            return self.embedding(station_index)
        return (station_index.float() / (N_STATIONS - 1)).unsqueeze(1)

    def forward(self, patch: torch.Tensor, station_index: torch.Tensor) -> torch.Tensor:
        """Logits (batch,) of patches (batch, channels, z, y, x) of stations `station_index` (batch,) 0..16."""
        features = self.features(patch.contiguous(memory_format=torch.channels_last_3d)).flatten(1)
        station = self.encode_station(station_index).to(features.dtype)
        return self.classifier(torch.cat([features, station], dim=1)).squeeze(1)


def encode_side(tumor_sides: list[str | None], device: torch.device | str = "cpu") -> torch.Tensor:
    """One-hot tumour side (batch, 2): R = (1, 0), L = (0, 1), unknown = (0, 0)."""
    encoded = torch.zeros(len(tumor_sides), len(SIDE_CODES), device=device)
    for row, side in enumerate(tumor_sides):
        if side is not None:
            encoded[row, SIDE_CODES[side]] = 1.0
    return encoded


class NStageModel(nn.Module):
    """TS2/TS3: the shared classifier on all 17 station patches of a scan, then two linear layers -> N0-N3."""

    def __init__(self, classifier: StationClassifier, hidden: int = 64):
        super().__init__()
        self.classifier = classifier
        self.head = nn.Sequential(
            nn.Linear(N_STATIONS + len(SIDE_CODES), hidden), nn.ReLU(inplace=True), nn.Linear(hidden, N_STAGES)
        )

    def station_logits(self, patches: torch.Tensor) -> torch.Tensor:
        """Station logits (scans, 17) of patches (scans, 17, channels, z, y, x)."""
        scans, n_stations = patches.shape[:2]
        stations = torch.arange(n_stations, device=patches.device).repeat(scans)
        return self.classifier(patches.flatten(0, 1), stations).view(scans, n_stations)

    def forward(self, patches: torch.Tensor | None, side: torch.Tensor,
                station_logits: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(N-stage logits (scans, 4), station logits (scans, 17)); `side` is encode_side's (scans, 2).

        `station_logits` given (scans, 17): the head runs on them and `patches` is not used (TS3's logit bank).
        """
        if station_logits is None:
            station_logits = self.station_logits(patches)
        return stage_logits_of(self.head_outputs(station_logits), side), station_logits

    def head_outputs(self, station_logits: torch.Tensor) -> torch.Tensor:
        """The head's logits (scans, 2, 4) with the tumour side right and with it left (SIDE_CODES order)."""
        rows = station_logits.shape[0]
        codes = torch.eye(len(SIDE_CODES), dtype=station_logits.dtype, device=station_logits.device)
        return torch.stack([self.head(torch.cat([station_logits, code.expand(rows, -1)], dim=1)) for code in codes],
                           dim=1)


def stage_logits_of(head_outputs: torch.Tensor, side: torch.Tensor) -> torch.Tensor:
    """N-stage logits (scans, 4) from `NStageModel.head_outputs` and encode_side's side: the head's at a known side;
    with the side unknown the log of its stage probabilities averaged over the two sides, so that the start stages
    such a scan as the rule does wherever the two sides agree (the rule's own condition for staging it)."""
    known = head_outputs[torch.arange(len(side), device=side.device), side.argmax(dim=1)]
    mixed = torch.logsumexp(F.log_softmax(head_outputs, dim=2), dim=1) + math.log(SIDE_PRIOR)
    return torch.where((side.sum(dim=1) > 0)[:, None], known, mixed)


def rule_head_units(group_masks: np.ndarray) -> list[tuple[int, int | None, int, int]]:
    """The steps a head needs to compute a rule set: (station, side code or None, from group, to group); each step
    takes two hidden units (`init_head_at_rule`).

    `group_masks` (2, 3, 17) is cache.stations' per side (in SIDE_CODES order) and group. Every station gets a
    step for its lower group of the two sides (0 to low); a station whose group depends on the side gets a second
    step, for that side only, that lifts it to the higher group (low to high).
    """
    groups = (group_masks * np.arange(1, group_masks.shape[1] + 1)[None, :, None]).max(axis=1)  # (2, 17)
    low, high = groups.min(axis=0), groups.max(axis=0)
    steps = [(station, None, 0, int(low[station])) for station in range(groups.shape[1]) if low[station]]
    return steps + [(station, int(groups[:, station].argmax()), int(low[station]), int(high[station]))
                    for station in range(groups.shape[1]) if high[station] > low[station]]


@torch.no_grad()
def init_head_at_rule(head: nn.Sequential, group_masks: np.ndarray, cutoff: float = 0.5, sharpness: float = 10.0,
                      gate: float = 1000.0) -> None:
    """Set the head's weights so that it computes the rule-based stager on station logits and the side: the
    N-stage is the highest group holding a station with logit above the cutoff's.

    Each step of `rule_head_units` is a pair of hidden units, relu(sharpness * (logit - cut) + 1/2) minus
    relu(sharpness * (logit - cut) - 1/2): a call between 0 and 1, so a station far above the cut counts no more
    than one just above it, and the head's outputs stay on the scale of a few calls (a fitted temperature then
    gives them a confidence). Only stations less than 0.05 (at sharpness 10) below the cut can add up to a call.
    A step that lifts a station's group for one side is gated off by `gate` for the other. Output m sums
    (min(m, to) - min(m, from)) * call - m/2, so the argmax is the highest group whose calls sum above 1/2
    (`stage_logits_of` handles an unknown side). Units the rule does not use keep their random input
    weights and start with no say in the output. Training then refines the rule instead of learning it from a few
    dozen scans (benchmarks/README.md, "TS3 starts at the rule").
    """
    first, second = head[0], head[2]
    steps = rule_head_units(group_masks)
    if 2 * len(steps) > first.out_features:
        raise ValueError(f"the rule set needs {2 * len(steps)} hidden units; head_hidden is {first.out_features}")
    cut = math.log(cutoff / (1.0 - cutoff))
    n_stations = first.in_features - len(SIDE_CODES)
    stages = torch.arange(second.out_features)
    second.weight.zero_()
    second.bias.copy_(-0.5 * stages)
    for step, (station, side, low, high) in enumerate(steps):
        lift = (stages.clamp(max=high) - stages.clamp(max=low)).to(second.weight.dtype)
        for unit, offset, sign in ((2 * step, 0.5, 1.0), (2 * step + 1, -0.5, -1.0)):
            first.weight[unit].zero_()
            first.weight[unit, station] = sharpness
            first.bias[unit] = offset - sharpness * cut
            if side is not None:
                first.weight[unit, n_stations + side] = gate
                first.bias[unit] -= gate
            second.weight[:, unit] = sign * lift


@torch.no_grad()
def fit_output_scale(stage_logits: Callable[[float], torch.Tensor], n_stage: torch.Tensor) -> float:
    """The factor s in [0.001, 100] on the head's outputs that minimises the mean cross-entropy of
    `stage_logits(s)` (temperature scaling): the argmax stays, the confidence is fitted to how often it is right
    (near 0.001 when the outputs' ordering is on average no better than uniform probabilities)."""
    target = n_stage.long()

    def cross_entropy(log_scale: float) -> float:
        return F.cross_entropy(stage_logits(math.exp(log_scale)).double(), target).item()

    return math.exp(minimize_scalar(cross_entropy, bounds=(math.log(1e-3), math.log(1e2)), method="bounded").x)


def scale_head_output(head: nn.Sequential, scale: float) -> None:
    """Multiply the head's N-stage logits by `scale` (its last layer's weights and bias)."""
    with torch.no_grad():
        head[2].weight.mul_(scale)
        head[2].bias.mul_(scale)


def build_classifier(settings) -> StationClassifier:
    """The station classifier described by TrainSettings."""
    return StationClassifier(
        in_channels=3 if settings.station_mask_channel else 2,
        channels=tuple(settings.channels),
        dropout=tuple(settings.dropout),
        patch_size_vox=settings.patch_size_vox,
        station_encoding=settings.station_encoding,
        embedding_dim=settings.embedding_dim,
        norm=settings.norm,
    )


def build_model(settings) -> nn.Module:
    """StationClassifier for TS1, NStageModel for TS2/TS3."""
    classifier = build_classifier(settings)
    return classifier if settings.stage == "ts1" else NStageModel(classifier, settings.head_hidden)
