"""Methods compared on the same cross-validation folds: metrics per fold, mean ± sd, pooled, and paired tests.

Inputs are plain arrays over the cohort's scans (catalogue order for stations): the truth (`EvaluationCohort`) and one
`MethodPredictions` per method, each covering every scan as a test scan of exactly one fold. Unknown labels
(-1) are left out of the station metrics; scans without a known N-stage, or that a method cannot stage (tumour
side unknown), are left out of its N-stage metrics and counted in `unstageable`.

Pooled metrics come with 95 % intervals from a patient-level bootstrap (`evaluate.statistics`); every method is
resampled with the same draws (one seed), so their intervals describe the same resampled cohorts. In a study,
patient ids are `<dataset>/<id>`, `EvaluationCohort.datasets` names each scan's dataset, and every resample draws within
each dataset as many patients as it has. Paired tests swap a patient's predictions together (all its stations,
all its scans): a patient's cases are not independent.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cache.dataset import NAMESPACE_SEPARATOR
from cache.stations import UNSTAGEABLE
from evaluate.metrics import (
    MetricSummary,
    NStageMetrics,
    StationMetrics,
    metric_names,
    n_stage_confusion,
    n_stage_metrics,
    station_confusion,
    station_metrics,
    summarise_folds,
)
from evaluate.statistics import (
    Interval,
    McNemarResult,
    PermutationResult,
    bootstrap_intervals,
    cluster_permutation_test,
    mcnemar_exact,
    patient_resamples,
)

N_BOOTSTRAP = 1000  # resamples per interval: percentile ends settle to about +-0.01 on the demo


@dataclass(frozen=True)
class EvaluationCohort:
    """Truth of the evaluated scans: ids, tumour side, station labels (scans, 17) and N-stage (-1 unknown)."""

    patient_ids: tuple[str, ...]
    scan_ids: tuple[str, ...]
    tumor_sides: tuple[str | None, ...]
    station_true: np.ndarray
    n_true: np.ndarray
    fold: np.ndarray  # test fold of each scan

    def __post_init__(self) -> None:
        n = len(self.scan_ids)
        assert self.station_true.shape == (n, 17) and self.n_true.shape == (n,) and self.fold.shape == (n,)

    @property
    def folds(self) -> tuple[int, ...]:
        return tuple(int(f) for f in np.unique(self.fold))

    @property
    def datasets(self) -> tuple[str, ...]:
        """Each scan's dataset in a study (the prefix of `<dataset>/<id>`), "" for ids of a single dataset."""
        return tuple(p.split(NAMESPACE_SEPARATOR)[0] if NAMESPACE_SEPARATOR in p else "" for p in self.patient_ids)


@dataclass(frozen=True)
class MethodPredictions:
    """One method's test predictions: station status and score (probability, or the baseline's score; NaN
    where a method has none), N-stage (-1 unstageable), and notes such as the threshold chosen per fold.
    `baseline` is the key of a registered baseline (evaluate/baselines/registry.py), empty for a trained model."""

    name: str
    station_pred: np.ndarray  # (scans, 17) int8
    station_score: np.ndarray  # (scans, 17) float64
    n_pred: np.ndarray  # (scans,) int64
    notes: dict[str, str] = field(default_factory=dict)
    baseline: str = ""


@dataclass(frozen=True)
class MethodResult:
    name: str
    station_per_fold: dict[int, StationMetrics]
    n_stage_per_fold: dict[int, NStageMetrics]
    station_summary: MetricSummary
    n_stage_summary: MetricSummary
    station_pooled: StationMetrics
    n_stage_pooled: NStageMetrics
    station_confusion: np.ndarray  # pooled 2x2
    n_stage_confusion: np.ndarray  # pooled 4x4
    unstageable: tuple[str, ...]  # scan ids the method could not stage (tumour side unknown)
    notes: dict[str, str]
    station_interval: dict[str, Interval]  # pooled metric -> patient-bootstrap 95 % interval
    n_stage_interval: dict[str, Interval]
    baseline: str = ""  # the method's registered baseline, empty for a trained model


@dataclass(frozen=True)
class PairedTests:
    """Method A vs B: McNemar and the patient-clustered permutation test on pooled station predictions, the
    patient-clustered permutation test on pooled N-stage accuracy (a patient's scans swapped together)."""

    method_a: str
    method_b: str
    mcnemar: McNemarResult
    n_stations: int
    permutation: PermutationResult | None  # None when no scan is staged by both with a known N-stage
    n_scans: int  # scans both methods staged, with a known N-stage
    n_scan_patients: int  # patients of those scans: the units the N-stage test swaps
    clustered: PermutationResult  # station accuracy, all stations of a patient swapped together
    n_patients: int  # patients with a known station label


def _station_arrays(cohort: EvaluationCohort, method: MethodPredictions, scans: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(truth, prediction, score) of the stations with a known label of `scans`, flattened."""
    truth = cohort.station_true[scans]
    known = truth >= 0
    return truth[known], method.station_pred[scans][known], method.station_score[scans][known]


def _staged(cohort: EvaluationCohort, method: MethodPredictions, scans: np.ndarray) -> np.ndarray:
    """Scans (indices) with a known true N-stage that the method could stage."""
    return scans[(cohort.n_true[scans] >= 0) & (method.n_pred[scans] != UNSTAGEABLE)]


def _scores_or_none(scores: np.ndarray) -> np.ndarray | None:
    return None if np.isnan(scores).any() else scores


def pooled_intervals(cohort: EvaluationCohort, method: MethodPredictions, n_bootstrap: int, seed: int
                     ) -> tuple[dict[str, Interval], dict[str, Interval]]:
    """Patient-bootstrap intervals of the pooled station and N-stage metrics (empty when n_bootstrap is 0),
    resampled within each dataset of a study."""
    if n_bootstrap <= 0 or not len(cohort.scan_ids):
        return {}, {}
    weights = patient_resamples(cohort.patient_ids, n_bootstrap, seed, cohort.datasets)
    known = cohort.station_true >= 0
    y_true, y_pred = cohort.station_true[known], method.station_pred[known]
    score = _scores_or_none(method.station_score[known])
    scan_of_station = np.nonzero(known)[0]  # each known station's scan: a resample weighs it as its scan
    staged = _staged(cohort, method, np.arange(len(cohort.scan_ids)))
    n_true, n_pred = cohort.n_true[staged], method.n_pred[staged]
    station = bootstrap_intervals(lambda w: station_metrics(y_true, y_pred, score, w[scan_of_station]),
                                  weights,
                                  metric_names(StationMetrics)) if known.any() else {}
    n_stage = bootstrap_intervals(lambda w: n_stage_metrics(n_true, n_pred, w), weights[:, staged],
                                  metric_names(NStageMetrics)) if staged.size else {}
    return station, n_stage


def evaluate_method(cohort: EvaluationCohort, method: MethodPredictions, n_bootstrap: int = N_BOOTSTRAP,
                    seed: int = 0) -> MethodResult:
    """Metrics of one method per fold, summarised over folds, and pooled over all test scans with
    patient-bootstrap intervals (`n_bootstrap` resamples drawn from `seed`; 0: none)."""
    if method.station_pred.shape != cohort.station_true.shape or method.n_pred.shape != cohort.n_true.shape:
        raise ValueError(f"method {method.name!r}: predictions cover {method.station_pred.shape[0]} scans, "
                         f"the cohort has {cohort.station_true.shape[0]}")
    station_per_fold, n_per_fold = {}, {}
    for fold in cohort.folds:
        scans = np.flatnonzero(cohort.fold == fold)
        y_true, y_pred, score = _station_arrays(cohort, method, scans)
        station_per_fold[fold] = station_metrics(y_true, y_pred, _scores_or_none(score))
        staged = _staged(cohort, method, scans)
        n_per_fold[fold] = n_stage_metrics(cohort.n_true[staged], method.n_pred[staged])
    every = np.arange(len(cohort.scan_ids))
    y_true, y_pred, score = _station_arrays(cohort, method, every)
    staged = _staged(cohort, method, every)
    unstageable = tuple(cohort.scan_ids[i] for i in np.flatnonzero(method.n_pred == UNSTAGEABLE))
    station_interval, n_stage_interval = pooled_intervals(cohort, method, n_bootstrap, seed)
    return MethodResult(
        name=method.name,
        station_per_fold=station_per_fold,
        n_stage_per_fold=n_per_fold,
        station_summary=summarise_folds(list(station_per_fold.values())),
        n_stage_summary=summarise_folds(list(n_per_fold.values())),
        station_pooled=station_metrics(y_true, y_pred, _scores_or_none(score)),
        n_stage_pooled=n_stage_metrics(cohort.n_true[staged], method.n_pred[staged]),
        station_confusion=station_confusion(y_true, y_pred),
        n_stage_confusion=n_stage_confusion(cohort.n_true[staged], method.n_pred[staged]),
        unstageable=unstageable,
        notes=dict(method.notes),
        station_interval=station_interval,
        n_stage_interval=n_stage_interval,
        baseline=method.baseline,
    )


def compare_methods(cohort: EvaluationCohort, a: MethodPredictions, b: MethodPredictions, rng: np.random.Generator,
                    n_permutations: int = 10_000) -> PairedTests:
    """Exact McNemar and the patient-clustered permutation test on every station with a known label; the
    patient-clustered permutation test on the scans both methods staged."""
    known = cohort.station_true >= 0
    patient_of_scan = np.asarray(cohort.patient_ids, dtype=object)
    mcnemar = mcnemar_exact(cohort.station_true[known], a.station_pred[known], b.station_pred[known])
    both = (cohort.n_true >= 0) & (a.n_pred != UNSTAGEABLE) & (b.n_pred != UNSTAGEABLE)
    permutation = None
    if both.any():
        permutation = cluster_permutation_test(cohort.n_true[both], a.n_pred[both], b.n_pred[both],
                                               list(patient_of_scan[both]), rng, n_permutations)
    patients = np.broadcast_to(patient_of_scan[:, None], known.shape)[known]
    clustered = cluster_permutation_test(cohort.station_true[known], a.station_pred[known], b.station_pred[known],
                                         list(patients), rng, n_permutations)
    return PairedTests(method_a=a.name, method_b=b.name, mcnemar=mcnemar, n_stations=int(known.sum()),
                       permutation=permutation, n_scans=int(both.sum()),
                       n_scan_patients=len(set(patient_of_scan[both])), clustered=clustered,
                       n_patients=len(set(patients)))
