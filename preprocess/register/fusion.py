"""Label fusion: per-atlas station labels (argmax of the warped one-hot channels), then a majority vote.

Ties between labels with equally many votes go to the label with the larger mean warped probability, so the
answer does not depend on label order; a count difference of one vote always wins over the tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class StationMap:
    """Fused stations of one scan on its cache grid (z, y, x).

    `votes` (17, z, y, x) uint8 counts the atlases that put each voxel in each station (index = code - 1);
    `vote_fraction` divides by `n_atlases` on demand (float32, same shape), so the map stays compact at 1 mm.
    `qa` holds one plain dict per atlas and stage (see `preprocess.register.qa`), `timings_s` the step times.
    """

    labels: np.ndarray
    votes: np.ndarray
    n_atlases: int
    qa: list[dict] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def vote_fraction(self) -> np.ndarray:
        return self.votes.astype(np.float32) / np.float32(self.n_atlases)


def atlas_labels(warped_stations: torch.Tensor) -> torch.Tensor:
    """(N, z, y, x) uint8 station codes: argmax over background and the (N, 17, z, y, x) warped one-hot channels."""
    background = (1.0 - warped_stations.sum(1, keepdim=True)).clamp_min(0.0)
    return torch.cat([background, warped_stations], dim=1).argmax(1).to(torch.uint8)


class VoteAccumulator:
    """Running vote counts and summed probabilities (background + 17 stations) over atlases."""

    def __init__(self, n_stations: int, shape: tuple[int, ...], device: torch.device | str) -> None:
        self.counts = torch.zeros(n_stations + 1, *shape, dtype=torch.uint8, device=device)
        self.probability = torch.zeros(n_stations + 1, *shape, dtype=torch.float32, device=device)
        self.n_atlases = 0

    def add(self, warped_stations: torch.Tensor) -> torch.Tensor:
        """Add the (N, 17, z, y, x) warped channels of N atlases; returns their (N, z, y, x) labels."""
        labels = atlas_labels(warped_stations)
        codes = torch.arange(self.counts.shape[0], device=labels.device).view(1, -1, 1, 1, 1)
        self.counts += (labels.unsqueeze(1) == codes).sum(0, dtype=torch.uint8)
        background = (1.0 - warped_stations.sum(1, keepdim=True)).clamp_min(0.0)
        self.probability += torch.cat([background, warped_stations], dim=1).sum(0)
        self.n_atlases += labels.shape[0]
        return labels

    def fused(self) -> tuple[np.ndarray, np.ndarray]:
        """Majority-vote labels (z, y, x) uint8 and station vote counts (17, z, y, x) uint8."""
        score = self.counts.float() + 0.5 * self.probability / max(self.n_atlases, 1)
        labels = score.argmax(0).to(torch.uint8)
        return labels.cpu().numpy(), self.counts[1:].cpu().numpy()


def majority_vote(labels: np.ndarray, n_stations: int) -> tuple[np.ndarray, np.ndarray]:
    """Fuse hard (N, z, y, x) label arrays by majority vote (ties: lowest code); labels and station counts."""
    codes = np.arange(n_stations + 1).reshape(-1, *([1] * (labels.ndim - 1)))
    counts = np.stack([(labels == c).sum(0) for c in codes.ravel()]).astype(np.uint8)
    return counts.argmax(0).astype(np.uint8), counts[1:]
