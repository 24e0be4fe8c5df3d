"""Paired significance tests between two methods on the same cases.

- Exact McNemar on station predictions: a two-sided binomial test (p = 0.5) on the discordant pairs, i.e. the
  stations one method classifies correctly and the other does not (Dietterich 1998).
- Paired permutation test on N-stage accuracy (or another paired statistic): each scan's two predictions are
  swapped at random; exact enumeration when few scans differ, else Monte Carlo with a passed-in Generator.
- Clustered permutation test on station accuracy: the unit swapped is a patient (all its stations at once), since
  the 17 stations of one patient are not independent and McNemar counts each as a case of its own.
- Patient-level bootstrap: resamples draw patients with replacement (each with all its scans and stations), and
  a metric's 95 % interval is the 2.5th and 97.5th percentile of its resampled values.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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


def swap_patterns(k: int, rng: np.random.Generator, n_permutations: int) -> tuple[np.ndarray, bool]:
    """(patterns, k) booleans saying which of k exchangeable units are swapped: all 2**k patterns when
    k <= EXACT_PERMUTATION_LIMIT (exact), else `n_permutations` random ones."""
    if k <= EXACT_PERMUTATION_LIMIT:
        return ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(bool), True
    return rng.random((n_permutations, k)) < 0.5, False


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
    swaps, exact = swap_patterns(differ.size, rng, n_permutations)
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


def cluster_permutation_test(y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray, clusters: Sequence[str],
                             rng: np.random.Generator, n_permutations: int = 10_000) -> PermutationResult:
    """Two-sided paired permutation test of accuracy(A) - accuracy(B) over cases grouped in clusters (patients).

    Under the null the two methods are exchangeable per patient: all of a patient's predictions are swapped
    together, which flips the sign of its difference d_i = (#right by A) - (#right by B). The statistic is
    sum(d_i) / cases; exact over every sign pattern of the patients with d_i != 0 when at most
    EXACT_PERMUTATION_LIMIT, else p = (1 + #{|null| >= |observed|}) / (1 + n_permutations).
    """
    y_true, pred_a, pred_b = (np.asarray(v) for v in (y_true, pred_a, pred_b))
    if not y_true.shape == pred_a.shape == pred_b.shape or y_true.ndim != 1 or len(clusters) != y_true.size:
        raise ValueError(f"expected 1-D arrays of one shape and a cluster per case: truth {y_true.shape}, "
                         f"A {pred_a.shape}, B {pred_b.shape}, clusters {len(clusters)}")
    _, cluster = np.unique(np.asarray(clusters), return_inverse=True)
    per_case = (pred_a == y_true).astype(np.int64) - (pred_b == y_true).astype(np.int64)
    differences = np.bincount(cluster, weights=per_case).astype(np.int64)
    differences = differences[differences != 0]
    observed = int(differences.sum())
    if differences.size == 0:
        return PermutationResult(difference=0.0, p_value=1.0, n_permutations=1, exact=True)
    flips, exact = swap_patterns(differences.size, rng, n_permutations)
    null = np.where(flips, -differences, differences).sum(axis=1)
    extreme = np.abs(null) >= abs(observed)  # integer sums: no rounding to allow for
    p_value = float(np.mean(extreme)) if exact else float((1 + extreme.sum()) / (1 + n_permutations))
    return PermutationResult(difference=observed / y_true.size, p_value=p_value, n_permutations=int(null.size),
                             exact=exact)


@dataclass(frozen=True)
class Interval:
    """A percentile bootstrap interval; NaN ends when no resample defined the metric."""

    low: float
    high: float

    def format(self, digits: int = 2) -> str:
        return "n/a" if np.isnan(self.low) else f"[{self.low:.{digits}f}, {self.high:.{digits}f}]"


def patient_resamples(patient_ids: Sequence[str], n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(n_resamples, scans) weights: each resample draws as many patients as there are, with replacement, and
    weighs each scan by how often its patient was drawn (so a patient's scans stay together)."""
    _, patient = np.unique(np.asarray(patient_ids), return_inverse=True)
    n_patients = int(patient.max()) + 1 if patient.size else 0
    drawn = rng.integers(0, max(n_patients, 1), size=(n_resamples, n_patients))
    counts = np.zeros((n_resamples, n_patients), dtype=np.int64)
    np.add.at(counts, (np.arange(n_resamples)[:, None], drawn), 1)
    return counts[:, patient]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """The central `level` percentile interval of resampled values, NaN (undefined resamples) left out."""
    values = np.asarray(values, dtype=np.float64)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return Interval(float("nan"), float("nan"))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high))


def bootstrap_intervals(metrics: Callable[[np.ndarray], object], weights: np.ndarray, names: Sequence[str],
                        level: float = 0.95) -> dict[str, Interval]:
    """Interval of each named metric: `metrics(scan_weights)` returns an object with those attributes, computed
    once per resample (rows of `weights`, from `patient_resamples`). A resample without any weight on these
    cases (none of its patients has one) leaves every metric undefined."""
    values = {name: [] for name in names}
    for row in weights:
        result = metrics(row) if row.any() else None
        for name in names:
            values[name].append(float("nan") if result is None else getattr(result, name))
    return {name: percentile_interval(np.array(v), level) for name, v in values.items()}
