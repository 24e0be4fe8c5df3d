"""The study's report folder: report.md with the paper's Tables 4-7 and its claims checked, CSV twins, Fig. 9.

Files: report.md; methods.csv (every method per fold, mean, sd, pooled; `evaluate.report.write_methods_csv`);
paired_tests.csv; claims.csv; timings.csv (Table 7); runs.csv (each row's run folder, key, settings changes,
training time per fold); fig9_confusion.png (Table 4 methods) and ablation_confusion.png (Tables 5-6 rows).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import platform
import subprocess
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from cache.dataset import Study
from cache.settings import settings_dict
from evaluate.baselines.registry import names_of
from evaluate.comparison import EvaluationCohort, MethodPredictions, MethodResult, PairedTests
from evaluate.evaluation import per_dataset_markdown, study_description
from evaluate.experiment_plan import ABLATIONS, ROWS, ExperimentSettings, FoldRun, PlannedRun, differing_settings
from evaluate.figures import confusion_figure
from evaluate.paper_claims import Claim, claims_section, paper_claims, verdict
from evaluate.report import methods_table_markdown, paired_tests_markdown, write_methods_csv, write_paired_tests_csv
from evaluate.timing_table import StepTime, timing_markdown, write_timing_csv


@dataclass(frozen=True)
class StudyReport:
    """Everything the report shows; `methods`/`results` keyed by the method's name in the tables."""

    study: ExperimentSettings
    config: Study
    runs: dict[str, PlannedRun]
    fold_runs: list[FoldRun]
    folds: tuple[int, ...]
    fold_file: Path
    cohort: EvaluationCohort
    methods: dict[str, MethodPredictions]
    results: dict[str, MethodResult]
    tests: dict[tuple[str, str], PairedTests]
    member_results: dict[str, dict[str, MethodResult]]  # a study's members each on their own (else empty)
    timings: list[StepTime]
    n_lesions: dict[str, np.ndarray]
    train_seconds: float
    total_seconds: float
    device: str


def code_version() -> str:
    """Package version and git commit (with '-dirty' when the tree has changes), as far as they are known."""
    try:
        version = metadata.version("lnstage")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "no git"
    return f"lnstage {version}, commit {commit}"


def table4_names(results: dict[str, MethodResult]) -> list[str]:
    return ["TS1", "TS2", "TS3", *names_of(results)]


def _relabelled(result: MethodResult, label: str) -> MethodResult:
    return dataclasses.replace(result, name=label)


def ablation_sections(results: dict[str, MethodResult]) -> list[str]:
    parts = []
    for title, factor, levels in ABLATIONS:
        rows = [_relabelled(results[name], f"{factor}: {level}") for level, name in levels]
        parts += [f"## {title}", "", f"Rows: {'; '.join(f'{level} = {name}' for level, name in levels)}.", "",
                  "Mean ± sd over folds:", "", methods_table_markdown(rows), "", "Pooled over all test scans:", "",
                  methods_table_markdown(rows, pooled=True), ""]
    return parts


def rows_markdown(report: StudyReport) -> str:
    """Each trained row: stage, run folder, key, what it changes against TS1, training time per fold."""
    base = report.runs["TS1"].settings
    lines = ["| Row | Stage | Run folder | Key | Differs from TS1 in | Starts from | Train s per fold | Epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for name, planned in report.runs.items():
        mine = [r for r in report.fold_runs if r.row == name]
        seconds = np.array([r.train_seconds for r in mine])
        changes = ", ".join(f"{k} = {b!r}" for k, (_, b) in differing_settings(base, planned.settings).items())
        lines.append(f"| {name} | {planned.row.stage} | `{planned.run_dir}` | {planned.key} | {changes or '—'} | "
                     f"{planned.parent.row.name if planned.parent else '—'} | "
                     f"{seconds.mean():.0f} ± {seconds.std(ddof=1) if len(seconds) > 1 else 0:.0f} | "
                     f"{', '.join(str(r.epochs) for r in mine)} |")
    return "\n".join(lines)


def header_lines(report: StudyReport) -> list[str]:
    cohort, config = report.cohort, report.config
    reused = sum(r.reused for r in report.fold_runs)
    return [
        f"- dataset: **{study_description(config)}**, label column **{config.label_column}**, rule set "
        f"**{config.rule_set}**",
        f"- code version: {code_version()}",
        *[f"- {m.name}: cache `{m.cache_dir}`; manifest `{m.manifest_path}`" for m in config.members],
        f"- folds: {', '.join(map(str, report.folds))} of the stored fold file `{report.fold_file}`",
        f"- test scans: {len(cohort.scan_ids)} ({len(set(cohort.patient_ids))} patients); stations with a known "
        f"label: {int((cohort.station_true >= 0).sum())} ({int((cohort.station_true == 1).sum())} malignant); "
        f"N-stage known: {int((cohort.n_true >= 0).sum())}",
        f"- fold runs: {len(report.fold_runs)} ({reused} reused, {len(report.fold_runs) - reused} trained now)",
        f"- time: {report.total_seconds:.0f} s in all, {report.train_seconds:.0f} s of it training; machine: "
        f"{platform.node()}, {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch "
        f"threads, device {report.device}",
        *[f"- lesions for the overlap baseline ({source}): {int(count.sum())}, {count.mean():.1f} per scan"
          for source, count in report.n_lesions.items()],
    ]


def write_claims_csv(claims: list[Claim], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["table", "claim", "paper", "here", "holds"])
        for c in claims:
            writer.writerow([c.table, c.statement, c.paper, c.here, "" if c.holds is None else c.holds])


def write_runs_csv(report: StudyReport, path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["row", "stage", "fold", "key", "fold_dir", "reused", "train_seconds", "epochs"])
        for r in report.fold_runs:
            planned = report.runs[r.row]
            writer.writerow([r.row, planned.row.stage, r.fold, planned.key, r.fold_dir, r.reused,
                             f"{r.train_seconds:.3f}", r.epochs])


def write_study_report(out: Path, report: StudyReport) -> Path:
    """Write the report folder; returns the path of report.md."""
    out.mkdir(parents=True, exist_ok=True)
    results = report.results
    claims = paper_claims(results, report.tests)
    t4 = [results[n] for n in table4_names(results)]
    trained = [results[r.name] for r in ROWS]
    write_methods_csv(list(results.values()), out / "methods.csv")
    write_paired_tests_csv(list(report.tests.values()), out / "paired_tests.csv")
    write_claims_csv(claims, out / "claims.csv")
    write_timing_csv(report.timings, out / "timings.csv")
    write_runs_csv(report, out / "runs.csv")
    fig9 = confusion_figure([r.name for r in t4], [r.station_confusion for r in t4],
                            [r.n_stage_confusion for r in t4], out / "fig9_confusion.png")
    ablation = confusion_figure([r.name for r in trained], [r.station_confusion for r in trained],
                                [r.n_stage_confusion for r in trained], out / "ablation_confusion.png")
    parts = [
        f"# The paper's experiments on {report.config.name}", "", *header_lines(report), "",
        "## Which of the paper's claims hold on this dataset", "", claims_section(claims), "",
        "## Table 4: methods on the same folds (mean ± sd over folds)", "", methods_table_markdown(t4), "",
        "Pooled over all test scans (95 % patient-bootstrap intervals, patients resampled within each dataset; "
        "\"(k/n undefined)\": k of the n resamples could not define the metric and the interval stands on the "
        "others; station metrics over the scans with station labels, N-stage over all):", "",
        methods_table_markdown(t4, pooled=True), "",
        *[f"- {r.name}: {k} {v}" for r in t4 for k, v in r.notes.items() if k != "run"], "",
        *(["## Table 4 per dataset (pooled over its test scans)", "",
           per_dataset_markdown(report.member_results, report.config, [r.name for r in t4])]
          if report.member_results else []),
        *ablation_sections(results),
        "## Paired tests", "",
        "McNemar (exact) on the station predictions with a known label, each station a case of its own; beside "
        "it the patient-clustered permutation test of station accuracy (all stations of a patient swapped "
        "together); the same clustered test on N-stage accuracy over the scans both methods staged (all scans "
        "of a patient swapped together).", "",
        paired_tests_markdown(list(report.tests.values())), "",
        "## Fig. 9: confusion matrices (pooled)", "", f"![Table 4 methods]({fig9.name})", "",
        f"![trained rows]({ablation.name})", "",
        "## Table 7: processing time per scan on this machine", "",
        "Preprocessing steps as the cache files recorded them when built (TotalSegmentator masks were given, so "
        "its step only reads them); the rest timed in this study.", "", timing_markdown(report.timings), "",
        "## Rows and their settings", "", rows_markdown(report), "",
        "Settings of the TS1 row (every other row differs only as listed above):", "", "```",
        json.dumps(settings_dict(report.runs["TS1"].settings)["TrainSettings"], indent=1), "```", "",
        "Study settings:", "", "```", json.dumps(dataclasses.asdict(report.study), indent=1), "```", "",
        "## Unstageable scans (tumour side unknown)", "",
        *[f"- {r.name}: {len(r.unstageable)}" + (f" ({', '.join(r.unstageable)})" if r.unstageable else "")
          for r in results.values()], "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(parts))
    print("\n".join(["", methods_table_markdown(t4), "", *[f"- {c.statement}: {verdict(c)}" for c in claims]]))
    return path
