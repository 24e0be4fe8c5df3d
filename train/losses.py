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
    """The lambdas of the paper's Eq. 2 (0.1, 0.1, 0.02, 1 there) and how the station term weighs its classes."""

    ce: float = 0.1
    mse: float = 0.1
    pseudo: float = 0.02
    bce: float = 1.0
    balance_stations: bool = True


def station_bce(logits: torch.Tensor, status: torch.Tensor) -> torch.Tensor:
    """Mean BCE over the entries with a known status (0/1); zero (with a graph) when none is known."""
    known = status >= 0
    if not bool(known.any()):
        return logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(logits[known].float(), status[known].float())


def inverse_frequency_weights(targets: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """Per entry: weight inversely proportional to how often its target (0 or 1) occurs among the `known` entries,
    scaled so the known weights average 1; 0 where not known. The paper's weighting of Eq. 3 over a batch."""
    weight = torch.zeros_like(targets, dtype=torch.float32)
    values = targets[known]
    present = [v for v in (0.0, 1.0) if bool((values == v).any())]
    for v in present:
        entries = known & (targets == v)
        weight[entries] = values.numel() / (len(present) * int(entries.sum()))
    return weight


def scan_station_bce(station_logits: torch.Tensor, status: torch.Tensor, station_labelled: torch.Tensor | None = None,
                     balance: bool = True) -> torch.Tensor:
    """Eq. 2's station term: per scan the SUM of BCE over its stations with a known status (0/1), averaged over
    the scans that have one; zero (with a graph) when none has.

    `station_labelled` (scans,) bool: False drops a scan whole (a dataset whose station labels are not trusted).
    `balance`: weight malignant and benign stations inversely to their frequency in the batch (as Eq. 3's
    pseudo-labels are), so ~6 % malignant stations do not pull every station towards "benign".
    """
    known = status >= 0
    if station_labelled is not None:
        known = known & station_labelled.to(torch.bool).unsqueeze(1)
    scans = int(known.any(dim=1).sum())
    if scans == 0:
        return station_logits.sum() * 0.0
    target = status.float().clamp(min=0.0)
    weight = inverse_frequency_weights(status.float(), known) if balance else known.float()
    entries = F.binary_cross_entropy_with_logits(station_logits.float(), target, reduction="none")
    return (weight * entries).sum() / scans


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
    scans = int(known.any(dim=1).sum())
    return (inverse_frequency_weights(targets, known) * (group_probs.float() - targets).abs()).sum() / scans


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
    station_labelled: torch.Tensor | None = None,
) -> NStageLoss:
    """Eq. 2: lambda1 CE + lambda2 MSE (scans with a known N) + lambda3 pseudo + lambda4 station BCE (a sum over
    each scan's known stations; `station_labelled` (scans,) False leaves a scan out of it, see `scan_station_bce`).

    The pseudo-loss takes every scan with a known N-stage and side: its targets come from the N-stage."""
    known_n = n_stage >= 0
    if bool(known_n.any()):
        ce = F.cross_entropy(stage_logits[known_n].float(), n_stage[known_n])
        mse = expected_stage_mse(stage_logits[known_n], n_stage[known_n])
    else:
        ce = mse = stage_logits.sum() * 0.0
    pseudo = pseudo_loss(group_probabilities(station_logits.float().sigmoid(), masks), targets)
    bce = scan_station_bce(station_logits, station_status, station_labelled, weights.balance_stations)
    total = weights.ce * ce + weights.mse * mse + weights.pseudo * pseudo + weights.bce * bce
    return NStageLoss(total, ce.detach(), mse.detach(), pseudo.detach(), bce.detach())
