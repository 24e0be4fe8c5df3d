"""`python -m evaluate --dataset NAME --run RUN_DIR`: the trained method and the baselines on the same folds,
with paired tests, figures and (when ground truth exists) the atlas analyses, written as one report folder."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cache.build_settings import build_settings_for, expected_settings
from cache.dataset import Study, load_study
from cache.devices import resolve_device
from cache.reader import open_scan
from cache.settings import format_settings
from evaluate.atlas_analysis import cohort_mapping_accuracy, mapping_markdown, subsets_markdown
from evaluate.baselines.lesion_overlap import LESION_SOURCE_LABELS
from evaluate.baselines.registry import score_baselines
from evaluate.cohort import CohortData, load_evaluation_cohort, study_cache_files
from evaluate.comparison import EvaluationCohort, MethodPredictions, MethodResult, compare_methods, evaluate_method
from evaluate.figures import confusion_figure, qa_overlay_figure
from evaluate.model_predictions import model_method, run_folds, test_folds
from evaluate.paper_claims import claims_section, paper_claims
from evaluate.report import methods_table_markdown, paired_tests_markdown, write_report
from evaluate.settings import EvaluateSettings


class EvaluationError(ValueError):
    """Settings or inputs that cannot make a report; the message says what to pass."""


def parse_folds(text: str, available: tuple[int, ...]) -> tuple[int, ...]:
    """'0-4', '0,2,3' or '' (all available) -> sorted fold indices, each checked against `available`."""
    if not text.strip():
        return tuple(sorted(available))
    folds: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if match is None:
            raise EvaluationError(f"--folds {text!r}: expected e.g. '0-4' or '0,2'")
        low, high = int(match[1]), int(match[2] or match[1])
        folds.update(range(low, high + 1))
    unknown = sorted(folds - set(available))
    if unknown:
        raise EvaluationError(f"--folds {text!r}: fold(s) {unknown} have no trained run; "
                              f"available: {sorted(available)}")
    return tuple(sorted(folds))


def _code_version() -> str:
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _qa_figures(data: CohortData, method: MethodPredictions, out: Path, n_scans: int) -> list[Path]:
    """QA overlays for the first `n_scans` scans with a positive prediction or truth, else the first scans."""
    interesting = [i for i in range(len(data.paths)) if method.station_pred[i].any() or (
        data.cohort.station_true[i] == 1).any()]
    chosen = (interesting + [i for i in range(len(data.paths)) if i not in interesting])[:n_scans]
    paths = []
    for i in chosen:
        with open_scan(data.paths[i]) as scan:
            title = f"{data.cohort.patient_ids[i]} / {data.cohort.scan_ids[i]}: {method.name}, predicted N" \
                    f"{method.n_pred[i] if method.n_pred[i] >= 0 else '?'}, true N{data.cohort.n_true[i]}"
            paths.append(qa_overlay_figure(np.asarray(scan.ct), np.asarray(scan.suv), np.asarray(scan.station_labels),
                                           method.station_pred[i], title, out / f"qa_{scan.info.key}.png",
                                           scan.info.grid, probability=method.station_score[i]))
    return paths


def restrict(cohort: EvaluationCohort, keep: np.ndarray) -> EvaluationCohort:
    """The cohort's scans where `keep` holds."""
    return dataclasses.replace(cohort, patient_ids=tuple(np.array(cohort.patient_ids)[keep]),
                               scan_ids=tuple(np.array(cohort.scan_ids)[keep]),
                               tumor_sides=tuple(s for s, k in zip(cohort.tumor_sides, keep, strict=True) if k),
                               station_true=cohort.station_true[keep], n_true=cohort.n_true[keep],
                               fold=cohort.fold[keep])


def restrict_method(method: MethodPredictions, keep: np.ndarray) -> MethodPredictions:
    """A method's predictions of the scans where `keep` holds."""
    return dataclasses.replace(method, station_pred=method.station_pred[keep],
                               station_score=method.station_score[keep], n_pred=method.n_pred[keep])


def per_dataset_results(cohort: EvaluationCohort, methods: dict[str, MethodPredictions], n_bootstrap: int, seed: int
                        ) -> dict[str, dict[str, MethodResult]]:
    """A study's members each on their own: dataset -> method name -> result over that dataset's test scans
    (empty for a single dataset). A member without station labels has no station metric (all n/a)."""
    datasets = np.array(cohort.datasets)
    names = sorted(set(datasets) - {""})
    if len(names) < 2:
        return {}
    return {name: {method: evaluate_method(restrict(cohort, datasets == name),
                                           restrict_method(predictions, datasets == name), n_bootstrap, seed)
                   for method, predictions in methods.items()} for name in names}


def per_dataset_markdown(members: dict[str, dict[str, MethodResult]], study: Study, names: list[str]) -> str:
    """One pooled table (95 % patient-bootstrap intervals) per member, methods `names` in order."""
    parts = []
    for dataset, results in members.items():
        labels = "station labels" if study.member(dataset).station_labels else "N-stage only: no station metric"
        scans = results[names[0]].n_stage_pooled.n
        parts += [f"### {dataset} ({labels}; {scans} scans staged by {names[0]})", "",
                  methods_table_markdown([results[n] for n in names], pooled=True), ""]
    return "\n".join(parts)


@dataclass(frozen=True)
class Comparison:
    """The evaluated scans (test scans of the chosen folds) and every method's predictions of them."""

    data: CohortData  # restricted to the evaluated scans
    methods: tuple[MethodPredictions, ...]  # the trained model first, then the baselines


def compare_on_folds(settings: EvaluateSettings, config: Study, run: Path) -> Comparison:
    """The run's predictions and every registered baseline on the test scans of the chosen folds.

    The baselines choose their cutoffs on each fold's training scans, so they are computed over every fold's
    scans (all folds of the fold file) and then restricted to the chosen folds.
    """
    folds = parse_folds(settings.folds, tuple(run_folds(run)))
    test_fold = test_folds(run, config.label_column)
    data = load_evaluation_cohort(study_cache_files(config), test_fold, config.label_column, settings,
                                  expected_settings(build_settings_for(settings.dataset)), config)
    model = model_method(run, data, folds, config, settings)
    baselines = [scored.method for scored in score_baselines(data, settings, config.rule_set)]
    keep = np.isin(data.cohort.fold, folds)
    evaluated = dataclasses.replace(
        data, cohort=restrict(data.cohort, keep), paths=tuple(np.array(data.paths)[keep]),
        suv_max=data.suv_max[keep], lesion_overlap={k: v[keep] for k, v in data.lesion_overlap.items()},
        n_lesions={k: v[keep] for k, v in data.n_lesions.items()})
    return Comparison(evaluated, (model, *[restrict_method(m, keep) for m in baselines]))


def _header(config: Study, run: Path, comparison: Comparison) -> list[str]:
    cohort = comparison.data.cohort
    return [f"- dataset: {study_description(config)} (label column {config.label_column}, rule set "
            f"{config.rule_set})",
            f"- run: {run} (folds {', '.join(map(str, cohort.folds))}), code version {_code_version()}",
            f"- scans: {len(cohort.scan_ids)}; stations with known labels: {int((cohort.station_true >= 0).sum())}",
            *[f"- lesions for the overlap baseline, {LESION_SOURCE_LABELS[source]}: {int(count.sum())} in all, "
              f"{count.mean():.1f} per scan" for source, count in comparison.data.n_lesions.items()]]


def study_description(study: Study) -> str:
    """"demo", or "study paper: UKSH-1, UKSH-2, LungPETCTDx (N-stage only)"."""
    if not study.namespaced:
        return study.name
    return f"study {study.name}: " + ", ".join(
        m.name + ("" if m.station_labels else " (N-stage only)") for m in study.members)


def _atlas_subset_section(settings: EvaluateSettings, config: Study, run: Path, cohort: EvaluationCohort
                          ) -> tuple[str, str]:
    """The atlas-subset study on the first `atlas_subset_scans` test scans, those with malignant stations first."""
    from evaluate.atlas_subsets import run_subset_study

    order = sorted(range(len(cohort.scan_ids)), key=lambda i: (not (cohort.station_true[i] == 1).any(), i))
    count = len(order) if settings.atlas_subset_scans < 0 else settings.atlas_subset_scans
    scans = [(cohort.patient_ids[i], cohort.scan_ids[i], int(cohort.fold[i])) for i in order[:count]]
    device = resolve_device(settings.device).type
    study = run_subset_study(config.members[0], build_settings_for(settings.dataset), run, scans,
                             settings.atlas_subset_size, device)
    return (f"Atlas-subset sensitivity: every {settings.atlas_subset_size}-atlas subset vs all atlases (paper §4.1)",
            subsets_markdown(list(study.results), len(scans)))


def run_evaluation(settings: EvaluateSettings) -> int:
    """Write the report folder; returns the exit status (0)."""
    if not settings.run:
        raise EvaluationError("--run is required: the run folder holding fold<K>/ (e.g. runs/demo/ts1)")
    print(format_settings(settings))
    config = load_study(settings.dataset, root=settings.root or None, cache_root=settings.cache_root or None)
    run = Path(settings.run)
    out = settings.output_dir
    out.mkdir(parents=True, exist_ok=True)
    comparison = compare_on_folds(settings, config, run)
    cohort, methods = comparison.data.cohort, comparison.methods
    results = [evaluate_method(cohort, m, settings.n_bootstrap, settings.seed) for m in methods]
    rng = np.random.default_rng(settings.seed)
    tests = [compare_methods(cohort, methods[0], m, rng, settings.n_permutations) for m in methods[1:]]
    claims = claims_section(paper_claims({r.name: r for r in results}, {(t.method_a, t.method_b): t for t in tests}))

    figure = confusion_figure([r.name for r in results], [r.station_confusion for r in results],
                              [r.n_stage_confusion for r in results], out / "confusion.png")
    qa = _qa_figures(comparison.data, methods[0], out, settings.n_qa_scans)
    figures = "\n".join([f"![confusion matrices]({figure.name})", ""] + [f"![QA]({p.name})" for p in qa])
    sections = [("Which of the paper's claims hold on this run (against the baselines)", claims),
                ("Figures", figures)]
    members = per_dataset_results(cohort, {m.name: m for m in methods}, settings.n_bootstrap, settings.seed)
    if members:
        sections.insert(0, ("Per dataset, pooled over its test scans",
                            per_dataset_markdown(members, config, [m.name for m in methods])))
    # the atlas analyses read one dataset's ground truth and atlas bank: not run over a study's pool
    mapping = None if config.namespaced else cohort_mapping_accuracy(
        comparison.data.paths, cohort.scan_ids, config.members[0].resolve(settings.truth_dir))
    if mapping is not None:
        sections.append(("Atlas-based station mapping of the true nodes (paper §4.1, Fig. 8)",
                         mapping_markdown(mapping)))
    if settings.atlas_subset_scans and not config.namespaced:
        sections.append(_atlas_subset_section(settings, config, run, cohort))
    path = write_report(out, _header(config, run, comparison), results, tests, sections)
    (out / "settings.json").write_text(json.dumps(dataclasses.asdict(settings), indent=1, default=str))
    print("\n\n".join([methods_table_markdown(results), paired_tests_markdown(tests), claims, f"report: {path}"]))
    return 0
