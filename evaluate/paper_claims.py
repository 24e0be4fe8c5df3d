"""The paper's claims (§4.3, Tables 4-6) checked on a study's results, or on one run's against the baselines
(the one claims module of both reports): each holds, does not hold, or cannot be decided (a metric undefined on
this dataset). Baselines are found by their registry key (evaluate/baselines/registry.py).

Metric comparisons use the mean over folds, as the paper's tables do; "scans staged correctly" counts pooled
test scans; significance uses the paired tests of `evaluate.comparison` (exact McNemar on station predictions,
permutation test on N-stage accuracy) at p < 0.05.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from evaluate.baselines.lesion_overlap import BASELINE as LESION_OVERLAP
from evaluate.baselines.lesion_overlap import LESION_SOURCE_LABELS
from evaluate.baselines.registry import names_of
from evaluate.baselines.thresholding import BASELINE as THRESHOLDING
from evaluate.comparison import MethodResult, PairedTests

ALPHA = 0.05
# "performs similarly well" (TS3 vs TS1): station balanced accuracy within this, and McNemar p >= ALPHA
SIMILAR_BALANCED_ACCURACY = 0.05


@dataclass(frozen=True)
class Claim:
    """One claim: where the paper makes it, what it says, the paper's evidence, ours, and whether it holds here."""

    table: str
    statement: str
    paper: str
    here: str
    holds: bool | None


def _mean(result: MethodResult, level: str, metric: str) -> float:
    summary = result.station_summary if level == "station" else result.n_stage_summary
    return summary.mean[metric]


def _decide(*values: float, rule: Callable[..., bool]) -> bool | None:
    return None if any(math.isnan(v) for v in values) else bool(rule(*values))


def _correct_scans(result: MethodResult) -> int:
    return int(round(result.n_stage_pooled.accuracy * result.n_stage_pooled.n)) if result.n_stage_pooled.n else 0


def _versus(results: dict[str, MethodResult], a: str, b: str, level: str, metric: str, paper: str,
            statement: str, table: str, rule: Callable[[float, float], bool]) -> Claim:
    va, vb = _mean(results[a], level, metric), _mean(results[b], level, metric)
    return Claim(table, statement, paper, f"{a} {va:.3f} vs {b} {vb:.3f}", _decide(va, vb, rule=rule))


def _significant(test: PairedTests, kind: str, paper: str, statement: str, table: str) -> Claim:
    if kind == "mcnemar":
        p = test.mcnemar.p_value
        here = f"McNemar p = {p:.3g} ({test.mcnemar.only_a} vs {test.mcnemar.only_b} discordant stations)"
    else:
        p = math.nan if test.permutation is None else test.permutation.p_value
        here = "no scan staged by both" if test.permutation is None else (
            f"permutation p = {p:.3g} (accuracy difference {test.permutation.difference:+.3f}, {test.n_scans} scans)")
    return Claim(table, statement, paper, here, _decide(p, rule=lambda v: v < ALPHA))


def _ts1_vs_thresholding(results: dict[str, MethodResult], tests: dict[tuple[str, str], PairedTests],
                         thresholding: str) -> list[Claim]:
    t4, test = "Table 4", tests[("TS1", thresholding)]
    a, b = results["TS1"], results[thresholding]
    ca, cb = _correct_scans(a), _correct_scans(b)
    return [
        _significant(test, "mcnemar", "p < 0.05", "TS1's station predictions differ significantly from thresholding's",
                     t4),
        _versus(results, "TS1", thresholding, "station", "accuracy", "0.88 vs 0.83",
                "TS1 classifies stations more accurately than thresholding", t4, lambda x, y: x > y),
        _versus(results, "TS1", thresholding, "station", "specificity", "0.90 vs 0.84",
                "TS1 is more specific than thresholding (thresholding is oversensitive)", t4, lambda x, y: x > y),
        _versus(results, "TS1", thresholding, "station", "balanced_accuracy", "0.81 vs 0.81",
                "TS1's station balanced accuracy is no lower than thresholding's", t4, lambda x, y: x >= y),
        Claim(t4, "TS1 stages more scans correctly than thresholding", "N-stage accuracy 0.63 vs 0.50",
              f"{ca} of {a.n_stage_pooled.n} vs {cb} of {b.n_stage_pooled.n} scans",
              None if not (a.n_stage_pooled.n and b.n_stage_pooled.n) else ca > cb),
        _significant(test, "permutation", "p < 0.05", "TS1's N-staging differs significantly from thresholding's",
                     t4),
    ]


def _ts2_ts3_claims(results: dict[str, MethodResult], tests: dict[tuple[str, str], PairedTests]) -> list[Claim]:
    t4 = "Table 4"
    # lesion masks given with the data are a reference (manual contours; the truth on the phantom), not one of the
    # paper's automatic methods
    segmenters = [n for n in names_of(results, LESION_OVERLAP) if LESION_SOURCE_LABELS["cache"] not in n]
    others = ["TS1", "TS3", *names_of(results, THRESHOLDING), *segmenters]
    best_other = max(_mean(results[n], "n_stage", "accuracy") for n in others)
    ts2 = _mean(results["TS2"], "n_stage", "accuracy")
    d = abs(_mean(results["TS3"], "station", "balanced_accuracy") - _mean(results["TS1"], "station",
                                                                           "balanced_accuracy"))
    p = tests[("TS3", "TS1")].mcnemar.p_value
    return [
        Claim(t4, "TS2 has the highest N-stage accuracy of all methods (lesion masks given with the data aside)",
              "0.64 vs at most 0.63",
              f"TS2 {ts2:.3f} vs best other {best_other:.3f}", _decide(ts2, best_other, rule=lambda x, y: x > y)),
        _versus(results, "TS2", "TS1", "station", "sensitivity", "0.49 vs 0.72",
                "TS2 is less sensitive on stations than TS1", t4, lambda x, y: x < y),
        Claim(t4, f"TS3 performs like TS1 (station balanced accuracy within {SIMILAR_BALANCED_ACCURACY}, "
              "McNemar p >= 0.05)", "0.81 vs 0.81", f"difference {d:.3f}, McNemar p = {p:.3g}",
              _decide(d, p, rule=lambda x, y: x <= SIMILAR_BALANCED_ACCURACY and y >= ALPHA)),
    ]


def table4_claims(results: dict[str, MethodResult], tests: dict[tuple[str, str], PairedTests]) -> list[Claim]:
    """Table 4's claims whose methods are among `results` (TS1 against the baselines; TS2 and TS3 with all
    three trained)."""
    if "TS1" not in results:
        return []
    claims = []
    for thresholding in names_of(results, THRESHOLDING)[:1]:
        claims += _ts1_vs_thresholding(results, tests, thresholding)
    claims += [_significant(tests[("TS1", o)], "mcnemar", "p < 0.05 (autoPET)",
                            f"TS1's station predictions differ significantly from {o}", "Table 4")
               for o in names_of(results, LESION_OVERLAP)]
    if {"TS2", "TS3"} <= results.keys():
        claims += _ts2_ts3_claims(results, tests)
    return claims


def ablation_claims(results: dict[str, MethodResult], tests: dict[tuple[str, str], PairedTests]) -> list[Claim]:
    """Tables 5 and 6's claims whose rows are among `results`."""
    t5, t6 = "Table 5", "Table 6"
    claims = []
    if {"TS1", "TS1, centroid patch"} <= results.keys():
        claims += [
            _versus(results, "TS1", "TS1, centroid patch", "station", "balanced_accuracy", "0.81 vs 0.77",
                    "weight-map patch sampling gives a higher station balanced accuracy than a fixed centroid patch",
                    t5, lambda a, b: a > b),
            _significant(tests[("TS1", "TS1, centroid patch")], "mcnemar", "p < 0.05",
                         "the two samplings' station predictions differ significantly", t5),
        ]
    if {"TS2", "TS2, no pseudo-labels"} <= results.keys():
        claims += [
            _versus(results, "TS2", "TS2, no pseudo-labels", "n_stage", "accuracy", "0.64 vs 0.59",
                    "the pseudo-label loss raises N-stage accuracy", t6, lambda a, b: a > b),
            _significant(tests[("TS2", "TS2, no pseudo-labels")], "permutation", "p < 0.05",
                         "N-staging with and without pseudo-labels differs significantly", t6),
        ]
    return claims


def paper_claims(results: dict[str, MethodResult], tests: dict[tuple[str, str], PairedTests]) -> list[Claim]:
    """Every claim of §4.3 that these methods can check, in the paper's order: a study checks them all, one
    run's report (the run against the baselines) those about its method, named by its stage (TS1)."""
    return table4_claims(results, tests) + ablation_claims(results, tests)


def verdict(claim: Claim) -> str:
    return {True: "holds", False: "does not hold", None: "undecided (metric undefined here)"}[claim.holds]


def claims_markdown(claims: list[Claim]) -> str:
    lines = ["| Table | Claim | Paper | Here | Verdict |", "|---|---|---|---|---|"]
    lines += [f"| {c.table} | {c.statement} | {c.paper} | {c.here} | **{verdict(c)}** |" for c in claims]
    return "\n".join(lines)


def claims_section(claims: list[Claim]) -> str:
    """The report section body: how many claims hold, how they are compared, and the table."""
    if not claims:
        return "None of the paper's claims compares these methods (they are about TS1, TS2 and TS3 by name)."
    held = sum(c.holds is True for c in claims)
    return (f"{held} of {len(claims)} claims hold. Metric comparisons use the mean over folds (as the paper's "
            f"tables); significance is p < {ALPHA:g}.\n\n{claims_markdown(claims)}")
