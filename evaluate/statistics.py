"""Paired significance tests between two methods on the same cases.

- Exact McNemar on station predictions: a two-sided binomial test (p = 0.5) on the discordant pairs, i.e. the
  stations one method classifies correctly and the other does not (Dietterich 1998).
- Paired permutation test on N-stage accuracy (or another paired statistic): each scan's two predictions are
  swapped at random; exact enumeration when few scans differ, else Monte Carlo with a passed-in Generator.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import binomtest

# Up to this many discordant cases the permutation distribution is enumerated exactly (2**k swaps).
EXACT_PERMUTATION_LIMIT = 16


@dataclass(frozen=True)
class McNemarResult:
    """`only_a`: cases method A gets right and B wrong; `only_b` the reverse; p two-sided, exact."""

    only_a: int
    only_b: int
    p_value: float


@dataclass(frozen=True)
class PermutationResult:
    """Observed statistic(A) - statistic(B), two-sided p, and how it was computed."""

    difference: float
    p_value: float
    n_permutations: int
    exact: bool


def mcnemar_exact(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray) -> McNemarResult:
    """Exact McNemar test of two methods' predictions of the same cases against the same truth.

    With no discordant case the methods are indistinguishable and p = 1.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not y_true.shape == pred_a.shape == pred_b.shape:
        raise ValueError(f"shapes differ: truth {y_true.shape}, A {pred_a.shape}, B {pred_b.shape}")
    correct_a, correct_b = pred_a == y_true, pred_b == y_true
    only_a = int(np.sum(correct_a & ~correct_b))
    only_b = int(np.sum(~correct_a & correct_b))
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(binomtest(only_a, discordant, 0.5, alternative="two-sided").pvalue)
    return McNemarResult(only_a=only_a, only_b=only_b, p_value=p_value)


def accuracy(y_true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Accuracy along the last axis (vectorised over leading permutation axes)."""
    return np.mean(pred == y_true, axis=-1)


def paired_permutation_test(
    y_true: np.ndarray,
    pred_a: np.ndarray,
    pred_b: np.ndarray,
    rng: np.random.Generator,
    n_permutations: int = 10_000,
    statistic: Callable[[np.ndarray, np.ndarray], np.ndarray] = accuracy,
) -> PermutationResult:
    """Two-sided paired permutation test of statistic(A) - statistic(B), e.g. N-stage accuracy.

    Under the null the two methods are exchangeable per case, so each case's predictions are swapped with
    probability 1/2. Cases where A and B agree do not change under a swap; with at most
    EXACT_PERMUTATION_LIMIT disagreeing cases every swap pattern is enumerated (exact p), otherwise
    `n_permutations` random patterns give p = (1 + #{|d*| >= |d|}) / (1 + n_permutations).
    `statistic(y_true, pred)` must accept predictions with extra leading axes.
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not y_true.shape == pred_a.shape == pred_b.shape or y_true.ndim != 1:
        raise ValueError(f"expected 1-D arrays of one shape: truth {y_true.shape}, A {pred_a.shape}, B {pred_b.shape}")
    observed = float(statistic(y_true, pred_a) - statistic(y_true, pred_b))
    differ = np.flatnonzero(pred_a != pred_b)
    k = differ.size
    exact = k <= EXACT_PERMUTATION_LIMIT
    if exact:
        swaps = ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(bool)
    else:
        swaps = rng.random((n_permutations, k)) < 0.5
    perm_a = np.broadcast_to(pred_a, (swaps.shape[0], pred_a.size)).copy()
    perm_b = np.broadcast_to(pred_b, (swaps.shape[0], pred_b.size)).copy()
    perm_a[:, differ] = np.where(swaps, pred_b[differ], pred_a[differ])
    perm_b[:, differ] = np.where(swaps, pred_a[differ], pred_b[differ])
    null = statistic(y_true, perm_a) - statistic(y_true, perm_b)
    # a tolerance so that ties of the observed value count despite float rounding
    extreme = np.abs(null) >= abs(observed) - 1e-12
    if exact:
        p_value = float(np.mean(extreme))
    else:
        p_value = float((1 + np.sum(extreme)) / (1 + n_permutations))
    return PermutationResult(
        difference=observed, p_value=p_value, n_permutations=int(swaps.shape[0]), exact=exact
    )
