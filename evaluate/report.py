"""Report tables shaped like the paper's Tables 4-6: Markdown for people, CSV for programs.

One row per method; station columns (accuracy, balanced accuracy, sensitivity, specificity, AUC) then N-stage
columns (accuracy, balanced accuracy, sensitivity, specificity; one-vs-rest, macro over the stages present).
Cells are mean ± sd over folds; a second table gives the pooled values over all test scans, each with its
95 % patient-bootstrap interval in brackets, and "(k/n undefined)" when k of the n resamples could not define
the metric (e.g. drew no malignant station) and the interval stands on the others.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from evaluate.comparison import MethodResult, PairedTests
from evaluate.metrics import MetricSummary, NStageMetrics, StationMetrics, metric_names

STATION_HEADERS = {"accuracy": "Acc.", "balanced_accuracy": "Bal. Acc.", "sensitivity": "Sens.",
                   "specificity": "Spec.", "auc": "AUC"}


def _columns() -> list[tuple[str, str]]:
    """(level, metric) pairs in table order."""
    return [("station", m) for m in metric_names(StationMetrics)] + [
        ("n_stage", m) for m in metric_names(NStageMetrics)]


def _header() -> list[str]:
    return [f"{'LNS' if level == 'station' else 'N'} {STATION_HEADERS[m]}" for level, m in _columns()]


def _format_value(value: float, digits: int = 2) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _summary_cells(result: MethodResult) -> list[str]:
    summaries: dict[str, MetricSummary] = {"station": result.station_summary, "n_stage": result.n_stage_summary}
    return [summaries[level].format(metric) for level, metric in _columns()]


def _pooled_cells(result: MethodResult) -> list[str]:
    pooled = {"station": result.station_pooled, "n_stage": result.n_stage_pooled}
    intervals = {"station": result.station_interval, "n_stage": result.n_stage_interval}
    cells = []
    for level, metric in _columns():
        value = _format_value(getattr(pooled[level], metric))
        interval = intervals[level].get(metric)
        cells.append(value if interval is None or value == "n/a" else f"{value} {interval.format()}")
    return cells


def _markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def methods_table_markdown(results: Sequence[MethodResult], pooled: bool = False) -> str:
    """The Table-4-shaped Markdown table: mean ± sd over folds, or pooled over all test scans with 95 %
    patient-bootstrap intervals."""
    cells = _pooled_cells if pooled else _summary_cells
    return _markdown_table(["Method", *_header()], [[r.name, *cells(r)] for r in results])


def paired_tests_markdown(tests: Sequence[PairedTests]) -> str:
    rows = []
    for t in tests:
        perm = t.permutation
        rows.append([
            f"{t.method_a} vs {t.method_b}",
            f"{t.mcnemar.only_a} / {t.mcnemar.only_b}",
            f"{t.mcnemar.p_value:.3g}",
            f"{t.clustered.p_value:.3g} ({'exact, ' if t.clustered.exact else ''}{t.n_patients} patients)",
            "n/a" if perm is None else f"{perm.difference:+.3f}",
            "n/a" if perm is None else f"{perm.p_value:.3g}" + (" (exact)" if perm.exact else ""),
            f"{t.n_scans} ({t.n_scan_patients})",
        ])
    header = ["Comparison", "LNS right only A / only B", "McNemar p", "LNS clustered p",
              "N-stage acc. A − B", "N-stage clustered p", "scans (patients)"]
    return _markdown_table(header, rows)


def write_methods_csv(results: Sequence[MethodResult], path: Path) -> None:
    """Long CSV: method, fold ('mean', 'sd', 'pooled', 'pooled_low'/'pooled_high' (95 % patient-bootstrap
    interval), 'pooled_undefined' (how many resamples left the metric undefined) or the fold number), level,
    metric, value, n."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "fold", "level", "metric", "value", "n"])
        for r in results:
            for level, per_fold, summary, pooled, intervals in (
                ("station", r.station_per_fold, r.station_summary, r.station_pooled, r.station_interval),
                ("n_stage", r.n_stage_per_fold, r.n_stage_summary, r.n_stage_pooled, r.n_stage_interval),
            ):
                for metric in metric_names(type(pooled)):
                    for fold, m in per_fold.items():
                        writer.writerow([r.name, fold, level, metric, getattr(m, metric), m.n])
                    writer.writerow([r.name, "mean", level, metric, summary.mean[metric], summary.n_folds[metric]])
                    writer.writerow([r.name, "sd", level, metric, summary.sd[metric], summary.n_folds[metric]])
                    writer.writerow([r.name, "pooled", level, metric, getattr(pooled, metric), pooled.n])
                    if metric in intervals:
                        writer.writerow([r.name, "pooled_low", level, metric, intervals[metric].low, pooled.n])
                        writer.writerow([r.name, "pooled_high", level, metric, intervals[metric].high, pooled.n])
                        writer.writerow([r.name, "pooled_undefined", level, metric, intervals[metric].n_undefined,
                                         pooled.n])


def write_paired_tests_csv(tests: Sequence[PairedTests], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method_a", "method_b", "mcnemar_only_a", "mcnemar_only_b", "mcnemar_p", "n_stations",
                         "n_stage_accuracy_difference", "permutation_p", "permutation_exact", "n_permutations",
                         "n_scans", "n_scan_patients", "clustered_station_accuracy_difference", "clustered_p",
                         "clustered_exact", "n_patients"])
        for t in tests:
            perm = t.permutation
            perm_cells = ["", "", "", ""] if perm is None else [
                perm.difference, perm.p_value, perm.exact, perm.n_permutations]
            writer.writerow([t.method_a, t.method_b, t.mcnemar.only_a, t.mcnemar.only_b, t.mcnemar.p_value,
                             t.n_stations, *perm_cells, t.n_scans, t.n_scan_patients, t.clustered.difference,
                             t.clustered.p_value,
                             t.clustered.exact, t.n_patients])


def per_fold_markdown(result: MethodResult) -> str:
    """Per-fold station and N-stage metrics of one method, with the counts behind them."""
    rows = []
    for fold in result.station_per_fold:
        s, n = result.station_per_fold[fold], result.n_stage_per_fold[fold]
        rows.append([str(fold), *[_format_value(getattr(s, m)) for m in metric_names(StationMetrics)],
                     f"{s.n_positive}/{s.n}", *[_format_value(getattr(n, m)) for m in metric_names(NStageMetrics)],
                     str(n.n)])
    header = ["Fold", *[f"LNS {STATION_HEADERS[m]}" for m in metric_names(StationMetrics)], "LNS pos./all",
              *[f"N {STATION_HEADERS[m]}" for m in metric_names(NStageMetrics)], "scans"]
    return _markdown_table(header, rows)


def unstageable_markdown(results: Sequence[MethodResult]) -> str:
    """Scans each method could not stage (tumour side unknown and the sides disagree), listed, not dropped."""
    lines = [f"- {r.name}: {len(r.unstageable)} scan(s)" + (f": {', '.join(r.unstageable)}" if r.unstageable else "")
             for r in results]
    return "\n".join(lines)


def write_report(out: Path, header_lines: Sequence[str], results: Sequence[MethodResult],
                 tests: Sequence[PairedTests], extra_sections: Sequence[tuple[str, str]] = ()) -> Path:
    """Write report.md, methods.csv and paired_tests.csv to `out`; returns the Markdown path.

    `extra_sections` are (title, Markdown body) pairs appended after the main tables (figures, atlas analyses).
    """
    out.mkdir(parents=True, exist_ok=True)
    write_methods_csv(results, out / "methods.csv")
    write_paired_tests_csv(tests, out / "paired_tests.csv")
    parts = ["# Evaluation report", "", *header_lines, "",
             "## Methods (mean ± sd over folds; paper Table 4 shape)", "", methods_table_markdown(results), "",
             "## Methods, pooled over all test scans (95 % patient-bootstrap intervals)", "",
             "Patients are resampled within each dataset; \"(k/n undefined)\": k of the n resamples could not "
             "define the metric (e.g. no malignant station drawn) and the interval stands on the others.", "",
             methods_table_markdown(results, pooled=True), "",
             "## Paired tests", "",
             "McNemar: exact binomial test on stations one method classifies correctly and the other not, each "
             "station a case of its own. Clustered: station accuracy with all stations of a patient swapped "
             "together (a patient's stations are not independent). N-stage clustered: N-stage accuracy over the scans "
             "both methods staged, with all scans of a patient swapped together.", "",
             paired_tests_markdown(tests), "", "## Unstageable scans (tumour side unknown)", "",
             unstageable_markdown(results), ""]
    for r in results:
        parts += [f"## {r.name}: per fold", ""]
        parts += [f"- {key}: {value}" for key, value in r.notes.items()]
        parts += ["", per_fold_markdown(r), ""]
    for title, body in extra_sections:
        parts += [f"## {title}", "", body, ""]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    return path

