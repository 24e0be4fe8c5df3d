"""Station-level and N-stage metrics, per fold, as mean ± sd over folds, and pooled.

A metric that a fold cannot define is NaN, never a flattering number: sensitivity of a fold without positives,
AUC with one class, a one-vs-rest specificity when every scan has that stage. Balanced accuracy and the macro
averages run over the classes present in the truth (scikit-learn's convention), so an absent class neither
counts as perfect nor as zero. Summaries over folds skip NaN and say how many folds defined each metric.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass

import numpy as np

N_STAGES = 4


@dataclass(frozen=True)
class StationMetrics:
    """Binary station classification (1 malignant); `n_*` count the stations with a known label."""

    accuracy: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    auc: float
    n: int
    n_positive: int
    n_negative: int


@dataclass(frozen=True)
class NStageMetrics:
    """N0-N3 staging; sensitivity and specificity are one-vs-rest, macro over the stages present in the truth.

    The macro sensitivity equals the balanced accuracy by definition; both are kept because the paper's tables
    name them separately.
    """

    accuracy: float
    balanced_accuracy: float
    sensitivity: float
    specificity: float
    n: int
    stages_present: tuple[int, ...]


@dataclass(frozen=True)
class MetricSummary:
    """Mean and sample sd (ddof 1) over folds of each metric, and how many folds defined it."""

    mean: dict[str, float]
    sd: dict[str, float]
    n_folds: dict[str, int]

    def format(self, name: str, digits: int = 2) -> str:
        """"0.88 ± 0.02"; "n/a" when no fold defined the metric; "(k/5)" when only some did."""
        mean, sd, k = self.mean[name], self.sd[name], self.n_folds[name]
        if k == 0:
            return "n/a"
        text = f"{mean:.{digits}f}" if k == 1 else f"{mean:.{digits}f} ± {sd:.{digits}f}"
        total = max(self.n_folds.values())
        return text if k == total else f"{text} ({k}/{total} folds)"


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int,
              sample_weight: np.ndarray | None = None) -> np.ndarray:
    """(n_classes, n_classes) counts, rows true, columns predicted; weighted sums with `sample_weight`.

    np.bincount, not scikit-learn's confusion_matrix: a bootstrap calls this a thousand times per metric, and
    scikit-learn's input checks cost a millisecond a call.
    """
    counts = np.bincount(y_true * n_classes + y_pred, weights=sample_weight, minlength=n_classes**2)
    return counts.reshape(n_classes, n_classes)


def roc_auc(y_true: np.ndarray, score: np.ndarray, sample_weight: np.ndarray | None = None) -> float:
    """Area under the ROC curve (ties count one half): the weighted share of (malignant, benign) pairs that the
    score orders rightly (Mann-Whitney). NaN without both classes."""
    weight = np.ones(y_true.size) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    levels, level = np.unique(score, return_inverse=True)
    positive = np.bincount(level, weights=weight * (y_true == 1), minlength=levels.size)
    negative = np.bincount(level, weights=weight * (y_true == 0), minlength=levels.size)
    pairs = positive.sum() * negative.sum()
    if pairs == 0:
        return float("nan")
    below = np.cumsum(negative) - negative
    return float((positive * (below + 0.5 * negative)).sum() / pairs)


def _ratio(numerator: int, denominator: int) -> float:
    return float(numerator) / denominator if denominator else float("nan")


def _binary(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size and not np.isin(values, (0, 1)).all():
        raise ValueError(f"{name} must hold 0 or 1 only (filter unknown labels, -1, first); got {np.unique(values)}")
    return values.astype(np.int64)


def station_metrics(y_true: np.ndarray, y_pred: np.ndarray, probability: np.ndarray | None = None,
                    sample_weight: np.ndarray | None = None) -> StationMetrics:
    """Metrics of binary station predictions; `probability` (of malignancy) gives the AUC, else AUC is NaN.

    Inputs are 1-D over stations with known labels. Without positives, sensitivity and AUC are NaN and the
    balanced accuracy is the specificity alone (mean recall over the classes present); likewise without negatives.
    `sample_weight` (a bootstrap resample's multiplicities) weighs each station; the counts are then weighted sums.
    """
    y_true, y_pred = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true {y_true.shape} and y_pred {y_pred.shape} differ in shape")
    tn, fp, fn, tp = confusion(y_true, y_pred, 2, sample_weight).ravel()
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    recalls = [r for r in (sensitivity, specificity) if not np.isnan(r)]
    auc = float("nan")
    if probability is not None:
        probability = np.asarray(probability, dtype=np.float64)
        if probability.shape != y_true.shape:
            raise ValueError(f"probability {probability.shape} and y_true {y_true.shape} differ in shape")
        if tp + fn and tn + fp:
            auc = roc_auc(y_true, probability, sample_weight)
    return StationMetrics(
        accuracy=_ratio(tp + tn, tp + tn + fp + fn),
        balanced_accuracy=float(np.mean(recalls)) if recalls else float("nan"),
        sensitivity=sensitivity,
        specificity=specificity,
        auc=auc,
        n=int(y_true.size),
        n_positive=int(tp + fn),
        n_negative=int(tn + fp),
    )


def _stages(values: np.ndarray, name: str) -> np.ndarray:
    values = np.asarray(values)
    if values.size and not np.isin(values, np.arange(N_STAGES)).all():
        raise ValueError(f"{name} must hold N-stages 0-3 only (report unstageable scans separately); "
                         f"got {np.unique(values)}")
    return values.astype(np.int64)


def n_stage_confusion(n_true: np.ndarray, n_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """4x4 counts (weighted sums with `sample_weight`), rows true N0-N3, columns predicted N0-N3."""
    return confusion(_stages(n_true, "n_true"), _stages(n_pred, "n_pred"), N_STAGES, sample_weight)


def station_confusion(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """2x2 counts, rows true (benign, malignant), columns predicted."""
    return confusion(_binary(y_true, "y_true"), _binary(y_pred, "y_pred"), 2)


def n_stage_metrics(n_true: np.ndarray, n_pred: np.ndarray, sample_weight: np.ndarray | None = None) -> NStageMetrics:
    """Accuracy, balanced accuracy and one-vs-rest sensitivity/specificity macro over the stages present
    (`sample_weight`: each scan's weight, e.g. a bootstrap resample's multiplicities)."""
    n_true, n_pred = _stages(n_true, "n_true"), _stages(n_pred, "n_pred")
    if n_true.shape != n_pred.shape:
        raise ValueError(f"n_true {n_true.shape} and n_pred {n_pred.shape} differ in shape")
    matrix = n_stage_confusion(n_true, n_pred, sample_weight)
    present = tuple(int(c) for c in np.flatnonzero(matrix.sum(axis=1)))
    total = matrix.sum()
    sensitivities, specificities = [], []
    for c in present:
        tp = matrix[c, c]
        fn = matrix[c].sum() - tp
        fp = matrix[:, c].sum() - tp
        tn = total - tp - fn - fp
        sensitivities.append(_ratio(tp, tp + fn))
        specificities.append(_ratio(tn, tn + fp))

    def macro(values: list[float]) -> float:
        defined = [v for v in values if not np.isnan(v)]
        return float(np.mean(defined)) if defined else float("nan")

    sensitivity = macro(sensitivities)
    return NStageMetrics(
        accuracy=_ratio(int(np.trace(matrix)), int(total)),
        balanced_accuracy=sensitivity,
        sensitivity=sensitivity,
        specificity=macro(specificities),
        n=int(total),
        stages_present=present,
    )


def metric_names(metrics_type: type) -> tuple[str, ...]:
    """The float metric fields of StationMetrics or NStageMetrics, in table order."""
    return tuple(f.name for f in dataclasses.fields(metrics_type) if f.type in ("float", float))


def summarise_folds(per_fold: list[StationMetrics] | list[NStageMetrics]) -> MetricSummary:
    """Mean ± sample sd over folds of every float metric, skipping folds where a metric is NaN."""
    if not per_fold:
        raise ValueError("no folds to summarise")
    names = metric_names(type(per_fold[0]))
    mean, sd, count = {}, {}, {}
    for name in names:
        values = np.array([getattr(m, name) for m in per_fold], dtype=np.float64)
        defined = values[~np.isnan(values)]
        count[name] = int(defined.size)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            mean[name] = float(defined.mean()) if defined.size else float("nan")
            sd[name] = float(defined.std(ddof=1)) if defined.size > 1 else float("nan")
    return MetricSummary(mean=mean, sd=sd, n_folds=count)
