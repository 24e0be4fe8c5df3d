"""`python -m preprocess.phantom.calibrate`: SUVmax thresholding on phantom patients, beside the paper's figures.

Draws the patients of a cohort exactly as `python -m preprocess.phantom` would (same settings and random streams)
without writing files, takes SUVmax of the PET (interpolated onto the CT grid) over each true station mask, and
runs the paper's thresholding baseline on five folds: t from {2.5, ..., 5.5} by the training patients' station
balanced accuracy, then stations and N-stages (rule set `paper`) of the test patients. It prints the seven
thresholding figures of the paper's Table 4 (mean ± sd over folds), the cN mix (Table 2) and the ranking of
positive stations (Fig. 7), each beside the paper's value. The uptake settings of `PhantomSettings` were fitted
to these figures with this command, never to our models' results.

The metrics follow `evaluate.metrics` (N-stage sensitivity and specificity one-vs-rest, macro over the stages
present) but are computed here from scikit-learn's confusion matrices: `preprocess` does not import `evaluate`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from sklearn.metrics import confusion_matrix

from cache.cli import Command, Preset
from cache.run_log import progress
from cache.settings import SettingsError
from cache.stations import stage_scans, station_names
from preprocess.phantom.cohort import dicom_pet_patients, draw_patient
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.labels import RULE_SET
from preprocess.phantom.nodes import BENIGN_STATES
from preprocess.phantom.pet import pet_on_ct_grid
from preprocess.phantom.settings import PhantomSettings

CALIBRATION_PATIENTS = 200
FOLDS = 5
FOLD_STREAM = 4  # random stream of the fold split (the cohort uses 0-3)
PAPER_THRESHOLDS = (2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 5.5)  # the paper's candidates (section 4.2)
PAPER_THRESHOLD = 4.0
# Table 4, "Thresholding (t = 4)": station accuracy, balanced accuracy, sensitivity, specificity; N-stage accuracy,
# sensitivity, specificity.
PAPER_FIGURES = {
    "station accuracy": 0.83, "station balanced accuracy": 0.81, "station sensitivity": 0.77,
    "station specificity": 0.84, "N-stage accuracy": 0.50, "N-stage sensitivity": 0.51, "N-stage specificity": 0.84,
}
PAPER_CN_COUNTS = (196, 41, 81, 35)  # UKSH-1, Table 2
PAPER_MALIGNANT_STATIONS = (347, 5552)  # UKSH-1 clinical station status malignant/benign, Table 2
PAPER_TOP_STATIONS = ("4R", "4L", "7", "11R", "11L")  # Fig. 7: the most frequent positive stations
FIGURE_TOLERANCE, CN_TOLERANCE, THRESHOLD_TOLERANCE, TOP_RANKS = 0.04, 0.05, 0.5, 6


@dataclass(frozen=True)
class StationSuvTable:
    """Per patient (rows) and station (17 columns, catalogue order): SUVmax on the true mask and the truth."""

    suv_max: np.ndarray  # float64, NaN where the station is outside the field of view
    positive: np.ndarray  # bool
    sides: tuple[str, ...]
    n_stage: np.ndarray  # int64
    states: tuple[str, ...]  # benign-uptake state per patient


@dataclass(frozen=True)
class Calibration:
    """Thresholding on a phantom cohort: chosen t per fold, figures (mean, sd over folds), cN mix, ranking."""

    thresholds: tuple[float, ...]
    mean: dict[str, float]
    sd: dict[str, float]
    cn_fractions: tuple[float, ...]
    ranking: tuple[tuple[str, int], ...]  # (station, positive count), most frequent first
    malignant_fraction: float
    right_by_state: dict[str, tuple[int, int]]  # state: (patients staged right, patients) at the fold's t
    false_positives_by_state: dict[str, float]  # state: mean false-positive stations per patient


def station_suv_table(settings: PhantomSettings) -> StationSuvTable:
    """Draw `settings.patients` patients in memory and take SUVmax over each true station mask."""
    grid = field_grid(settings.extent_mm, settings.spacing_mm)
    dicom = dicom_pet_patients(settings)
    codes = np.arange(1, len(station_names()) + 1)
    suv_max, positive, sides, stages, states = [], [], [], [], []
    for i in progress(range(settings.patients), desc="calibration patients", unit="scan"):
        scan = draw_patient(settings, grid, i, dicom_pet=i in dicom)
        suv = pet_on_ct_grid(scan.suv, settings.pet_factor, grid.shape_zyx)
        present = np.isin(codes, np.unique(scan.stations))
        suv_max.append(np.where(present, ndimage.maximum(suv, scan.stations, index=codes), np.nan))
        positive.append(np.isin(station_names(), scan.labels.positive))
        sides.append(scan.labels.tumor_side)
        stages.append(scan.labels.n_stage)
        states.append(scan.benign_uptake.state)
    return StationSuvTable(np.asarray(suv_max, dtype=np.float64), np.asarray(positive), tuple(sides),
                           np.asarray(stages, dtype=np.int64), tuple(states))


def predict_stations(suv_max: np.ndarray, threshold: float) -> np.ndarray:
    """Station status: SUVmax > threshold; a station outside the field of view (NaN) is benign."""
    return np.nan_to_num(suv_max, nan=-np.inf) > threshold


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (a figure the patients cannot define)."""
    numerator, denominator = np.asarray(numerator, np.float64), np.asarray(denominator, np.float64)
    return np.divide(numerator, denominator, out=np.full(numerator.shape, np.nan), where=denominator > 0)


def _mean_defined(values: np.ndarray) -> float:
    """Mean over the defined (not NaN) values; NaN when none is."""
    defined = np.asarray(values, np.float64)[~np.isnan(values)]
    return float(defined.mean()) if defined.size else float("nan")


def _balanced_accuracy(truth: np.ndarray, predicted: np.ndarray) -> float:
    tn, fp, fn, tp = confusion_matrix(truth.ravel(), predicted.ravel(), labels=[False, True]).ravel()
    return float((_ratio(tp, tp + fn) + _ratio(tn, tn + fp)) / 2.0)


def choose_threshold(suv_max: np.ndarray, positive: np.ndarray) -> float:
    """The paper's candidate with the best station balanced accuracy (the first one on ties).

    Raises ValueError when the stations are all malignant or all benign (nothing to choose by)."""
    if positive.all() or not positive.any():
        raise ValueError(f"cannot choose a threshold: the {positive.size} training stations are all "
                         f"{'malignant' if positive.all() else 'benign'}; draw more patients (--patients)")
    scores = [_balanced_accuracy(positive, predict_stations(suv_max, t)) for t in PAPER_THRESHOLDS]
    return PAPER_THRESHOLDS[int(np.argmax(scores))]


def thresholding_figures(table: StationSuvTable, rows: np.ndarray, threshold: float) -> dict[str, float]:
    """The seven Table 4 figures of thresholding at `threshold` on the patients `rows`."""
    truth, predicted = table.positive[rows], predict_stations(table.suv_max[rows], threshold)
    tn, fp, fn, tp = confusion_matrix(truth.ravel(), predicted.ravel(), labels=[False, True]).ravel()
    stages = confusion_matrix(table.n_stage[rows], stage_scans(predicted, [table.sides[i] for i in rows], RULE_SET),
                              labels=[0, 1, 2, 3])
    present = np.flatnonzero(stages.sum(axis=1))
    hits = np.diag(stages)[present]
    negatives = stages.sum() - stages.sum(axis=1)[present]
    false_positives = stages.sum(axis=0)[present] - hits
    sensitivity, specificity = _ratio(tp, tp + fn), _ratio(tn, tn + fp)
    return {
        "station accuracy": float((tp + tn) / truth.size),
        "station balanced accuracy": _mean_defined(np.array([sensitivity, specificity])),
        "station sensitivity": float(sensitivity), "station specificity": float(specificity),
        "N-stage accuracy": float(hits.sum() / stages.sum()),
        "N-stage sensitivity": float(np.mean(hits / stages.sum(axis=1)[present])),
        "N-stage specificity": _mean_defined(_ratio(negatives - false_positives, negatives)),
    }


def calibrate(table: StationSuvTable, seed: int) -> Calibration:
    """Thresholding on five folds (t chosen on each training part), plus the cohort's label statistics."""
    patients = len(table.sides)
    order = np.random.default_rng([seed, FOLD_STREAM]).permutation(patients)
    thresholds, figures = [], []
    right = {state: [0, 0] for state in BENIGN_STATES}
    false_positives = {state: [] for state in BENIGN_STATES}
    for k in range(FOLDS):
        test = np.sort(order[k::FOLDS])
        train = np.setdiff1d(np.arange(patients), test)
        t = choose_threshold(table.suv_max[train], table.positive[train])
        thresholds.append(t)
        figures.append(thresholding_figures(table, test, t))
        predicted = predict_stations(table.suv_max[test], t)
        staged = stage_scans(predicted, [table.sides[i] for i in test], RULE_SET)
        for i, row, n in zip(test, predicted, staged, strict=True):
            right[table.states[i]][0] += int(n == table.n_stage[i])
            right[table.states[i]][1] += 1
            false_positives[table.states[i]].append(int((row & ~table.positive[i]).sum()))
    names = list(PAPER_FIGURES)
    values = np.array([[f[name] for name in names] for f in figures])  # a fold's NaN (no positives) is skipped
    counts = table.positive.sum(axis=0)
    ranking = sorted(zip(station_names(), counts.tolist(), strict=True), key=lambda item: -item[1])
    return Calibration(
        thresholds=tuple(thresholds), mean=dict(zip(names, np.nanmean(values, axis=0).tolist(), strict=True)),
        sd=dict(zip(names, np.nanstd(values, axis=0, ddof=1).tolist(), strict=True)),
        cn_fractions=tuple(float(np.mean(table.n_stage == n)) for n in range(4)), ranking=tuple(ranking),
        malignant_fraction=float(table.positive.mean()),
        right_by_state={state: (r, n) for state, (r, n) in right.items()},
        false_positives_by_state={s: float(np.mean(v)) if v else float("nan") for s, v in false_positives.items()},
    )


def _mark(ok: bool) -> str:
    return "ok" if ok else "OUT"


def format_calibration(result: Calibration, patients: int) -> str:
    """The report: each figure beside the paper's value and whether it is within the calibration target."""
    chosen = ", ".join(f"{t:g}" for t in result.thresholds)
    on_target = all(abs(t - PAPER_THRESHOLD) <= THRESHOLD_TOLERANCE for t in result.thresholds)
    lines = [f"SUVmax thresholding on {patients} phantom patients, true station masks, {FOLDS} folds",
             f"threshold chosen per fold: {chosen}   paper: {PAPER_THRESHOLD:g}   "
             f"(target ±{THRESHOLD_TOLERANCE:g}) {_mark(on_target)}",
             f"{'figure':<28}{'phantom':>16}{'paper':>8}  target ±{FIGURE_TOLERANCE:g}"]
    for name, paper in PAPER_FIGURES.items():
        mean, sd = result.mean[name], result.sd[name]
        lines.append(f"{name:<28}{mean:>9.3f} ± {sd:.3f}{paper:>8.2f}  {_mark(abs(mean - paper) <= FIGURE_TOLERANCE)}")
    paper_mix = np.asarray(PAPER_CN_COUNTS) / sum(PAPER_CN_COUNTS)
    lines.append(f"cN mix N0/N1/N2/N3 (target ±{CN_TOLERANCE * 100:g} points)")
    for n, (ours, paper) in enumerate(zip(result.cn_fractions, paper_mix, strict=True)):
        lines.append(f"  N{n}{ours * 100:>24.1f} %{paper * 100:>8.1f} %  {_mark(abs(ours - paper) <= CN_TOLERANCE)}")
    paper_fraction = PAPER_MALIGNANT_STATIONS[0] / sum(PAPER_MALIGNANT_STATIONS)
    lines.append(f"malignant stations{result.malignant_fraction * 100:>18.1f} %{paper_fraction * 100:>8.1f} %")
    top = [name for name, _ in result.ranking[:TOP_RANKS]]
    lines.append(f"positive stations, most frequent first (paper, Fig. 7: {', '.join(PAPER_TOP_STATIONS)} lead; "
                 f"target: all five among the first {TOP_RANKS}) {_mark(set(PAPER_TOP_STATIONS) <= set(top))}")
    lines.append("  " + ", ".join(f"{name} {count}" for name, count in result.ranking if count))
    lines.append("by benign-uptake state: patients staged right, false-positive stations per patient")
    for state in BENIGN_STATES:
        r, n = result.right_by_state[state]
        lines.append(f"  {state:<14}{r:>4} of {n:<4} {result.false_positives_by_state[state]:>6.2f}")
    return "\n".join(lines)


def check_patients(settings: PhantomSettings) -> tuple[PhantomSettings]:
    if settings.patients < 2 * FOLDS:
        raise SettingsError(f"--patients {settings.patients} is too few for {FOLDS} folds; draw at least {2 * FOLDS} "
                            f"(the calibration uses {CALIBRATION_PATIENTS})")
    return (settings,)


def run_calibration(settings: PhantomSettings) -> int:
    print(format_calibration(calibrate(station_suv_table(settings), settings.seed), settings.patients))
    return 0


COMMAND = Command("python -m preprocess.phantom.calibrate",
                  "SUVmax thresholding on phantom patients (drawn in memory, true station masks) beside the paper's "
                  "thresholding figures, cN mix and Fig. 7.", (PhantomSettings,), run_calibration,
                  presets=lambda given: [Preset("calibrate", PhantomSettings, {"patients": CALIBRATION_PATIENTS})],
                  check=check_patients)


def main(argv: Sequence[str] | None = None) -> int:
    """Calibrate and print the figures; exit 0, or 2 (usage) / 1 (failed) with one `error:` line."""
    return COMMAND.cli(argv)


if __name__ == "__main__":
    sys.exit(main())
