"""The baselines every report scores beside the trained models, keyed by name.

A new baseline is one module in this folder and one line in `BASELINES`: the module's `BASELINE` (its key) and
`methods(data, settings, rule_set)`, which yields one `MethodPredictions` per variant (e.g. per lesion source)
over every fold of the cohort, each carrying `baseline=BASELINE` (`baselines/cohort.cutoff_method` does that for a
cutoff chosen on the training folds). Reports find a baseline's methods by that key (`names_of`), never by the
name shown in the tables.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evaluate.baselines import lesion_overlap, thresholding
from evaluate.comparison import MethodPredictions, MethodResult

if TYPE_CHECKING:
    from evaluate.cohort import CohortData
    from evaluate.settings import EvaluateSettings


@dataclass(frozen=True)
class Baseline:
    """A registered baseline: its key, its methods over a cohort, and what Table 7 times for it."""

    key: str
    methods: Callable[[CohortData, EvaluateSettings, str], Iterator[MethodPredictions]]
    timing_step: str  # Table 7: its cutoff choice, prediction and staging, timed over the whole cohort
    uses_lesion_features: bool  # Table 7 charges the lesion segmentation and overlap features to it


BASELINES: dict[str, Baseline] = {b.key: b for b in (
    Baseline(thresholding.BASELINE, thresholding.methods,
             "thresholding (cutoff per fold) + rule-based N-staging", False),
    Baseline(lesion_overlap.BASELINE, lesion_overlap.methods,
             "overlap cutoff per fold + rule-based N-staging", True),
)}


@dataclass(frozen=True)
class ScoredBaseline:
    """One variant of a baseline over every fold of the cohort, with the seconds its `methods` step took."""

    method: MethodPredictions
    seconds: float


def score_baselines(data: CohortData, settings: EvaluateSettings, rule_set: str) -> list[ScoredBaseline]:
    """Every registered baseline's variants over every fold of the cohort, in registry order, each timed."""
    scored = []
    for baseline in BASELINES.values():
        started = time.perf_counter()
        for method in baseline.methods(data, settings, rule_set):  # a variant is computed when it is drawn
            scored.append(ScoredBaseline(method, time.perf_counter() - started))
            started = time.perf_counter()
    return scored


def names_of(methods: Mapping[str, MethodPredictions | MethodResult], baseline: str | None = None) -> list[str]:
    """Names of the methods (MethodPredictions or MethodResult by name) of the registered baseline `baseline`,
    or of every baseline when None, in their order."""
    if baseline is not None and baseline not in BASELINES:
        raise KeyError(f"no baseline {baseline!r} registered; registered: {', '.join(BASELINES)}")
    return [name for name, m in methods.items() if m.baseline and (baseline is None or m.baseline == baseline)]
