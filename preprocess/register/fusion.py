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


class VoteAccumulator:
    """Running vote counts and summed probabilities of background + `n_codes` labels over atlases."""

    def __init__(self, n_codes: int, shape: tuple[int, ...], device: torch.device | str) -> None:
        n_voxels = int(np.prod(shape))
        self.shape = tuple(shape)
        self.counts = torch.zeros(n_codes + 1, n_voxels, dtype=torch.uint8, device=device)
        self.probability = torch.zeros(n_voxels, n_codes + 1, dtype=torch.float32, device=device)
        self.n_atlases = 0

    def add(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Add one atlas' (voxels, 1 + n_codes) warped probabilities; returns its (voxels,) argmax labels."""
        labels = probabilities.argmax(1)
        self.counts += labels.unsqueeze(0) == torch.arange(self.counts.shape[0], device=labels.device).unsqueeze(1)
        self.probability += probabilities
        self.n_atlases += 1
        return labels

    def fused(self) -> tuple[np.ndarray, np.ndarray]:
        """Majority-vote labels (z, y, x) uint8 and per-code vote counts (n_codes, z, y, x) uint8."""
        score = self.counts.t().float() + 0.5 * self.probability / max(self.n_atlases, 1)
        labels = score.argmax(1).to(torch.uint8).reshape(self.shape)
        return labels.cpu().numpy(), self.counts[1:].reshape(-1, *self.shape).cpu().numpy()


def majority_vote(labels: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fuse hard (N, z, y, x) label arrays by majority vote (ties: lowest code); labels and per-code counts."""
    counts = np.stack([(labels == c).sum(0) for c in range(n_codes + 1)]).astype(np.uint8)
    return counts.argmax(0).astype(np.uint8), counts[1:]
