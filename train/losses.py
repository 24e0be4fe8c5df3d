"""Losses: station BCE (TS1) and the paper's Eq. 2 for end-to-end N-staging (TS2/TS3).

Unknown labels are -1 everywhere: station status (-1 = no station list for this scan), N-stage (-1 = not known),
pseudo-label entries (-1 = the `?` of Table 3, or the tumour side is unknown so the groups are undefined).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from cache.stations import N_GROUPS, UnknownTumorSideError, group_mask, pseudo_labels


@dataclass(frozen=True)
class LossWeights:
    """The lambdas of the paper's Eq. 2 (0.1, 0.1, 0.02, 1 there)."""

    ce: float = 0.1
    mse: float = 0.1
    pseudo: float = 0.02
    bce: float = 1.0


def station_bce(logits: torch.Tensor, status: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the entries with a known status (0/1); zero (with a graph) when none is known."""
    known = status >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known].float(), status[known].float())


def expected_stage_mse(stage_logits: torch.Tensor, n_stage: torch.Tensor) -> torch.Tensor:
    """MSE between the softmax's expected stage sum_k k * p_k and the true stage; differentiable, unlike argmax."""
    stages = torch.arange(stage_logits.shape[1], device=stage_logits.device, dtype=torch.float32)
    expected = (stage_logits.float().softmax(dim=1) * stages).sum(dim=1)
    return F.mse_loss(expected, n_stage.float())


def pseudo_targets(n_stage: int, tumor_side: str | None) -> np.ndarray:
    """float32[3] group targets of Table 3 for one scan, -1 for `?`; all -1 when N or the side is unknown."""
    if n_stage < 0 or tumor_side is None:
        return np.full(N_GROUPS, -1.0, dtype=np.float32)
    return np.array([-1.0 if t is None else float(t) for t in pseudo_labels(n_stage)], dtype=np.float32)


def group_masks(tumor_side: str | None, rule_set: str) -> np.ndarray:
    """bool[3, 17] station groups of the tumour side; all False when the side is unknown."""
    try:
        return group_mask(tumor_side, rule_set)
    except UnknownTumorSideError:
        return np.zeros((N_GROUPS, 17), dtype=bool)


def group_probabilities(station_probs: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """(scans, 3): per group the highest station probability in it (0 for an empty group row)."""
    masked = torch.where(masks, station_probs.unsqueeze(1), torch.zeros((), device=station_probs.device))
    return masked.amax(dim=2)


def pseudo_loss(group_probs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Eq. 3 over a batch: sum over groups of |p - p_hat|, averaged over scans with a known entry.

    Each known entry is weighted inversely to how often its target value (0 or 1) occurs among the batch's
    known entries, scaled so that the weights average 1 (so a balanced batch gives the plain Eq. 3 mean).
    """
    known = targets >= 0
    if not bool(known.any()):
        return group_probs.sum() * 0.0
    values = targets[known]
    counts = {v: int((values == v).sum()) for v in (0.0, 1.0)}
    present = [v for v, c in counts.items() if c > 0]
    weight = torch.zeros_like(targets)
    for v in present:
        weight[known & (targets == v)] = values.numel() / (len(present) * counts[v])
    scans = int(known.any(dim=1).sum())
    return (weight * (group_probs.float() - targets).abs() * known).sum() / scans


@dataclass(frozen=True)
class NStageLoss:
    total: torch.Tensor
    ce: torch.Tensor
    mse: torch.Tensor
    pseudo: torch.Tensor
    bce: torch.Tensor


def n_stage_loss(
    stage_logits: torch.Tensor,
    station_logits: torch.Tensor,
    n_stage: torch.Tensor,
    station_status: torch.Tensor,
    masks: torch.Tensor,
    targets: torch.Tensor,
    weights: LossWeights,
) -> NStageLoss:
    """Eq. 2: lambda1 CE + lambda2 MSE (scans with a known N) + lambda3 pseudo + lambda4 station BCE (known)."""
    known_n = n_stage >= 0
    if bool(known_n.any()):
        ce = F.cross_entropy(stage_logits[known_n].float(), n_stage[known_n])
        mse = expected_stage_mse(stage_logits[known_n], n_stage[known_n])
    else:
        ce = mse = stage_logits.sum() * 0.0
    pseudo = pseudo_loss(group_probabilities(station_logits.float().sigmoid(), masks), targets)
    bce = station_bce(station_logits, station_status)
    total = weights.ce * ce + weights.mse * mse + weights.pseudo * pseudo + weights.bce * bce
    return NStageLoss(total, ce.detach(), mse.detach(), pseudo.detach(), bce.detach())
