"""Label fusion: per-atlas station labels (argmax of the warped one-hot channels), then a majority vote.

Ties between labels with equally many votes go to the label with the larger mean warped probability, so the
answer does not depend on label order; a count difference of one vote always wins over the tie-break.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class AtlasLabels:
    """One atlas' own station labels on the scan's grid (z, y, x) uint8, after the linear stage and after the
    deformable one; kept only when asked (`map_stations(keep_atlas_labels=True)`, leave-one-atlas-out scoring)."""

    atlas: str
    linear: np.ndarray
    deformable: np.ndarray


@dataclass(frozen=True)
class StationMap:
    """Fused stations of one scan on its cache grid (z, y, x).

    `votes` (17, z, y, x) uint8 counts the atlases that put each voxel in each station (index = code - 1);
    `vote_fraction` divides by `n_atlases` on demand (float32, same shape), so the map stays compact at 1 mm.
    `qa` holds one plain dict per atlas and stage (see `preprocess.register.qa`), `timings_s` the step times,
    `memory` the registration's memory estimate and budget (GiB) and the atlas batch it chose; `atlas_labels`
    each atlas' own labels and `linear_labels` the fused vote after the linear stage, when they were asked for.
    """

    labels: np.ndarray
    votes: np.ndarray
    n_atlases: int
    qa: list[dict] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    memory: dict[str, float] = field(default_factory=dict)
    atlas_labels: tuple[AtlasLabels, ...] = ()
    linear_labels: np.ndarray | None = None  # the vote of the atlases after the linear stage, when asked for

    @property
    def vote_fraction(self) -> np.ndarray:
        return self.votes.astype(np.float32) / np.float32(self.n_atlases)


class VoteAccumulator:
    """Running vote counts and summed probabilities of background + `n_codes` labels over atlases.

    Only the box where some atlas gave some station a non-zero probability holds counts and sums (uint8 and
    float32 per label); elsewhere every atlas voted background, so only the background's summed probability is
    kept for the whole grid. A station-free voxel that joins the box later had exactly 0 for every station from
    the atlases before, so the sums are those of a dense accumulator, bit for bit, at a fraction of its memory.
    """

    def __init__(self, n_codes: int, shape: tuple[int, ...], device: torch.device | str) -> None:
        self.shape = tuple(shape)
        self.n_labels = n_codes + 1
        self.background = torch.zeros(int(np.prod(shape)), dtype=torch.float32, device=device)
        self.box: tuple[slice, ...] | None = None
        self.counts = torch.zeros(self.n_labels, 0, dtype=torch.uint8, device=device)
        self.probability = torch.zeros(0, self.n_labels, dtype=torch.float32, device=device)
        self.n_atlases = 0

    def add(self, probabilities: torch.Tensor) -> torch.Tensor:
        """Add one atlas' (voxels, 1 + n_codes) warped probabilities; returns its (voxels,) argmax labels."""
        labels = probabilities.argmax(1)
        self.background += probabilities[:, 0]
        support = torch.nonzero((probabilities[:, 1:] > 0).any(1).reshape(self.shape))
        if len(support):
            self._grow(tuple(slice(int(lo), int(hi) + 1) for lo, hi in zip(support.amin(0), support.amax(0),
                                                                                strict=True)))
        if self.box is not None:
            inside = self._box_view(labels)
            codes = torch.arange(self.n_labels, device=labels.device).unsqueeze(1)
            self.counts += inside.reshape(1, -1) == codes
            self.probability[:, 1:] += self._box_view(probabilities).reshape(-1, self.n_labels)[:, 1:]
        self.n_atlases += 1
        return labels

    def _box_view(self, flat: torch.Tensor) -> torch.Tensor:
        """The box part of a (voxels, ...) tensor, as (box voxels, ...)."""
        return flat.reshape(*self.shape, *flat.shape[1:])[self.box].reshape(-1, *flat.shape[1:])

    def _grow(self, box: tuple[slice, ...]) -> None:
        """Widen the box to hold `box`; new voxels have the votes of the atlases so far (all background)."""
        if self.box is not None:
            box = tuple(slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(self.box, box, strict=True))
            if box == self.box:
                return
        size = tuple(b.stop - b.start for b in box)
        counts = torch.zeros(self.n_labels, *size, dtype=torch.uint8, device=self.background.device)
        counts[0] = self.n_atlases
        probability = torch.zeros(*size, self.n_labels, dtype=torch.float32, device=self.background.device)
        if self.box is not None:
            old = tuple(slice(a.start - b.start, a.stop - b.start) for a, b in zip(self.box, box, strict=True))
            old_size = tuple(a.stop - a.start for a in self.box)
            counts[(slice(None), *old)] = self.counts.reshape(self.n_labels, *old_size)
            probability[old] = self.probability.reshape(*old_size, self.n_labels)
        self.box = box
        self.counts = counts.reshape(self.n_labels, -1)
        self.probability = probability.reshape(-1, self.n_labels)

    def fused(self) -> tuple[np.ndarray, np.ndarray]:
        """Majority-vote labels (z, y, x) uint8 and per-code vote counts (n_codes, z, y, x) uint8."""
        labels = np.zeros(self.shape, dtype=np.uint8)
        votes = np.zeros((self.n_labels - 1, *self.shape), dtype=np.uint8)
        if self.box is None:
            return labels, votes
        size = tuple(b.stop - b.start for b in self.box)
        self.probability[:, 0] = self._box_view(self.background)
        score = self.counts.t().float() + 0.5 * self.probability / max(self.n_atlases, 1)
        labels[self.box] = score.argmax(1).to(torch.uint8).reshape(size).cpu().numpy()
        votes[(slice(None), *self.box)] = self.counts[1:].reshape(-1, *size).cpu().numpy()
        return labels, votes


def majority_vote(labels: np.ndarray, n_codes: int) -> tuple[np.ndarray, np.ndarray]:
    """Fuse hard (N, z, y, x) label arrays by majority vote (ties: lowest code); labels and per-code counts."""
    counts = np.stack([(labels == c).sum(0) for c in range(n_codes + 1)]).astype(np.uint8)
    return counts.argmax(0).astype(np.uint8), counts[1:]


class AtlasLabelKeeper:
    """Each atlas' own labels after the linear and the deformable stage, and the vote of the linear stage fused
    as the deformable one is (`VoteAccumulator`), for leave-one-atlas-out scoring."""

    def __init__(self, n_codes: int, shape: tuple[int, ...], device: torch.device | str) -> None:
        self.shape = tuple(shape)
        self.linear_votes = VoteAccumulator(n_codes, shape, device)
        self.atlases: list[AtlasLabels] = []

    def add(self, atlas: str, linear_probabilities: torch.Tensor, deformable_labels: torch.Tensor) -> None:
        """One atlas' (voxels, 1 + n_codes) linear-stage probabilities and (voxels,) final labels."""
        linear = self.linear_votes.add(linear_probabilities)
        self.atlases.append(AtlasLabels(atlas, self._on_grid(linear), self._on_grid(deformable_labels)))

    def _on_grid(self, labels: torch.Tensor) -> np.ndarray:
        return labels.to(torch.uint8).reshape(self.shape).cpu().numpy()
