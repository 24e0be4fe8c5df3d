"""Patient-bootstrap intervals and the clustered test at the paper's scale, timed beside scikit-learn's metrics.

A synthetic pooled cohort shaped as the paper's study (497 patients, 764 scans, 17 stations, ~6 % malignant),
one method's predictions, then: `evaluate_method` with `--resamples` patient resamples (our bincount confusion and
Mann-Whitney AUC), the same resamples through scikit-learn's `confusion_matrix` + `roc_auc_score` (the peer; timed
on `--peer-resamples` and scaled), and the patient-clustered permutation test beside exact McNemar. Peak memory
is the process's maximum resident set (`resource.getrusage`), printed with the times.

    .venv/bin/python benchmarks/bootstrap.py
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score

from evaluate.comparison import EvaluationCohort, MethodPredictions, compare_methods, evaluate_method
from evaluate.statistics import patient_resamples


def cohort_and_method(patients: int, scans: int, rng: np.random.Generator
                      ) -> tuple[EvaluationCohort, MethodPredictions]:
    """Scans assigned to patients (each patient at least one), labels and a noisy method's predictions."""
    owner = np.concatenate([np.arange(patients), rng.integers(0, patients, scans - patients)])
    truth = (rng.random((scans, 17)) < 0.06).astype(np.int8)
    score = np.clip(truth * 0.35 + rng.random((scans, 17)) * 0.7, 0, 1)
    cohort = EvaluationCohort(tuple(f"m/p{i}" for i in owner), tuple(f"s{i}" for i in range(scans)), ("R",) * scans,
                              truth, rng.integers(0, 4, scans), rng.integers(0, 5, scans))
    n_pred = np.where(rng.random(scans) < 0.6, cohort.n_true, rng.integers(0, 4, scans))
    return cohort, MethodPredictions("m", (score >= 0.5).astype(np.int8), score, n_pred)


def peer_seconds(cohort: EvaluationCohort, method: MethodPredictions, resamples: int, seed: int) -> float:
    """scikit-learn's station confusion matrix and AUC over `resamples` patient resamples, in seconds."""
    weights = patient_resamples(cohort.patient_ids, resamples, seed, cohort.datasets)
    known = cohort.station_true >= 0
    y, pred, score = cohort.station_true[known], method.station_pred[known], method.station_score[known]
    started = time.perf_counter()
    for row in weights:
        w = np.broadcast_to(row[:, None], known.shape)[known]
        confusion_matrix(y, pred, labels=[0, 1], sample_weight=w)
        roc_auc_score(y, score, sample_weight=w)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=497)
    parser.add_argument("--scans", type=int, default=764)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--peer-resamples", type=int, default=100)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    cohort, method = cohort_and_method(args.patients, args.scans, rng)
    started = time.perf_counter()
    result = evaluate_method(cohort, method, n_bootstrap=args.resamples)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    evaluate_method(cohort, method, n_bootstrap=0)
    point = time.perf_counter() - started
    peer = peer_seconds(cohort, method, args.peer_resamples, 0) * args.resamples / args.peer_resamples
    other = MethodPredictions("b", np.zeros_like(method.station_pred), method.station_score, method.n_pred)
    started = time.perf_counter()
    tests = compare_methods(cohort, method, other, rng)
    tested = time.perf_counter() - started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{args.patients} patients, {args.scans} scans, {args.resamples} resamples")
    print(f"evaluate_method with intervals: {ours:.2f} s (without: {point:.2f} s); station metrics through "
          f"scikit-learn would take {peer:.1f} s for the station level alone ({peer / max(ours - point, 1e-9):.0f}x)")
    print(f"station accuracy {result.station_pooled.accuracy:.3f} {result.station_interval['accuracy'].format(3)}, "
          f"AUC {result.station_pooled.auc:.3f} {result.station_interval['auc'].format(3)}, N-stage accuracy "
          f"{result.n_stage_pooled.accuracy:.3f} {result.n_stage_interval['accuracy'].format(3)}")
    print(f"paired tests (McNemar, clustered, N-stage permutation): {tested:.2f} s; McNemar p "
          f"{tests.mcnemar.p_value:.3g}, clustered p {tests.clustered.p_value:.3g} over {tests.n_patients} patients")
    print(f"peak resident memory: {peak_mib:.0f} MiB")


if __name__ == "__main__":
    main()
