"""Paired significance tests between two methods on the same cases, and patient-level bootstrap intervals.

- Exact McNemar on station predictions: a two-sided binomial test (p = 0.5) on the discordant pairs, i.e. the
  stations one method classifies correctly and the other does not (Dietterich 1998).
- Clustered permutation test of accuracy (stations, or N-stage over scans): the unit swapped is a patient (all
  its cases at once), since the 17 stations of one patient, or its several scans, are not independent and a
  case-by-case swap counts each as evidence of its own. Exact enumeration when few patients differ, else Monte
  Carlo with a passed-in Generator.
- Patient-level bootstrap: resamples draw patients with replacement (each with all its scans and stations),
  within each stratum (a study's member) as many as it has, and a metric's 95 % interval is the 2.5th and
  97.5th percentile of its resampled values; resamples that leave the metric undefined are counted.
"""

from __future__ import annotations

import zlib
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


def swap_patterns(k: int, rng: np.random.Generator, n_permutations: int) -> tuple[np.ndarray, bool]:
    """(patterns, k) booleans saying which of k exchangeable units are swapped: all 2**k patterns when
    k <= EXACT_PERMUTATION_LIMIT (exact), else `n_permutations` random ones."""
    if k <= EXACT_PERMUTATION_LIMIT:
        return ((np.arange(2**k)[:, None] >> np.arange(k)) & 1).astype(bool), True
    return rng.random((n_permutations, k)) < 0.5, False


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
    """A percentile bootstrap interval over the resamples that defined the metric: `n_undefined` of the
    `n_resamples` did not (no malignant station drawn: no sensitivity) and are left out; NaN ends when none did."""

    low: float
    high: float
    n_undefined: int = 0
    n_resamples: int = 0

    def format(self, digits: int = 2) -> str:
        """"[0.81, 0.90]", with "(k/n undefined)" when k of the n resamples could not define the metric."""
        if np.isnan(self.low):
            return "n/a"
        undefined = f" ({self.n_undefined}/{self.n_resamples} undefined)" if self.n_undefined else ""
        return f"[{self.low:.{digits}f}, {self.high:.{digits}f}]{undefined}"


def _stratum_of_patient(patient: np.ndarray, stratum: np.ndarray, labels: np.ndarray, ids: np.ndarray
                        ) -> np.ndarray:
    """Each patient's stratum (patients and strata as indices per scan); a patient in two is an error naming it."""
    of_patient = np.zeros(int(patient.max(initial=-1)) + 1, dtype=np.int64)
    of_patient[patient] = stratum
    mixed = np.flatnonzero(of_patient[patient] != stratum)
    if mixed.size:
        mine = patient == patient[mixed[0]]
        raise ValueError(f"patient {str(ids[mixed[0]])!r} has scans in strata {sorted(map(str, set(labels[mine])))}; "
                         "a patient belongs to one dataset (a study's pool ids are <dataset>/<id>)")
    return of_patient


def patient_resamples(patient_ids: Sequence[str], n_resamples: int, seed: int,
                      strata: Sequence[str] | None = None) -> np.ndarray:
    """(n_resamples, scans) weights: each resample draws patients with replacement and weighs each scan by how
    often its patient was drawn (so a patient's scans stay together).

    `strata` (each scan's study member, e.g. `EvaluationCohort.datasets`) makes every resample draw within each stratum
    as many patients as it has, so each member keeps its share of the cohort. Each stratum draws from its own
    stream (`seed` and the stratum's name), so a member's resamples are the same alone as in a pool.
    """
    ids = np.asarray(patient_ids)
    labels = np.full(ids.size, "") if strata is None else np.asarray(strata, dtype=str)
    if labels.shape != ids.shape:
        raise ValueError(f"{labels.size} strata for {ids.size} scans: give each scan its stratum")
    _, patient = np.unique(ids, return_inverse=True)
    names, stratum = np.unique(labels, return_inverse=True)
    of_patient = _stratum_of_patient(patient, stratum, labels, ids)
    n_patients = of_patient.size
    draws = [np.zeros((n_resamples, 0), dtype=np.int64)]
    for s, name in enumerate(names):
        members = np.flatnonzero(of_patient == s)
        rng = np.random.default_rng([seed, zlib.crc32(str(name).encode())])
        draws.append(members[rng.integers(0, members.size, size=(n_resamples, members.size))])
    flat = (np.arange(n_resamples)[:, None] * n_patients + np.concatenate(draws, axis=1)).ravel()
    counts = np.bincount(flat, minlength=n_resamples * n_patients).reshape(n_resamples, n_patients)
    return counts[:, patient]


def percentile_interval(values: np.ndarray, level: float = 0.95) -> Interval:
    """The central `level` percentile interval of resampled values over those that are defined (not NaN),
    with the count of those that are not."""
    values = np.asarray(values, dtype=np.float64)
    defined = values[~np.isnan(values)]
    n_undefined = int(values.size - defined.size)
    if defined.size == 0:
        return Interval(float("nan"), float("nan"), n_undefined, int(values.size))
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(defined, [tail, 100 - tail])
    return Interval(float(low), float(high), n_undefined, int(values.size))


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
