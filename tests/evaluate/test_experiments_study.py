"""`python -m evaluate experiments` on a study of two tiny real cohorts (tests/train/test_label_roles.py): "tiny"
with station labels and "dx" with `station_labels = false` (one patient with two scans), with the demo's [train]
departures. The whole chain runs (every row on two folds, report), Table 4 has N-stage results per member and
pooled and station results for "tiny" only, TS1 is the same run as on "tiny" alone, Table 6's rows exist, and a
rerun retrains nothing."""

from __future__ import annotations

import csv
import dataclasses

import pandas as pd
import pytest
import torch

from evaluate.__main__ import main
from evaluate.experiment_plan import ExperimentSettings
from evaluate.experiments import MARKER, plan_study, run_experiments
from tests.train.conftest import LABELS
from tests.train.test_label_roles import write_tiny_study
from train.checkpoint import load_checkpoint
from train.loop import run_training

FLAGS = ["--folds", "0-1", "--max-epochs", "1", "--device", "cpu", "--no-progress", "--n-permutations", "200",
         "--n-bootstrap", "50"]
DX_SECOND_SCANS = (5, 11)  # two scans of one patient; every dx scan without tumour side, as demo-dx's
# The demo's departures (configs/datasets/demo.toml), scaled to the tiny cohort: station mask channel, batch norm,
# the best epoch by AUC, TS2/TS3 heads at their own rate after min_steps, TS3 on a bank of logit draws.
DEMO_LIKE_TABLES = """
[train]
station_mask_channel = true
norm = "batch"
val_metric = "auc"

[train.ts2]
head_lr = 0.01
min_steps = 1

[train.ts3]
head_lr = 0.01
head_logit_draws = 2
samples_per_epoch = 16
min_steps = 2
"""
N_STATION_COLUMNS = 5  # LNS Acc., Bal. Acc., Sens., Spec., AUC; then the four N-stage columns


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    study_file = write_tiny_study(root / "data", second_scans=DX_SECOND_SCANS, unknown_side=tuple(range(len(LABELS))))
    with open(study_file, "a") as f:
        f.write(DEMO_LIKE_TABLES)
    runs = root / "runs"
    assert main(["experiments", "--dataset", str(study_file), "--runs-dir", str(runs), *FLAGS]) == 0
    settings = ExperimentSettings(dataset=str(study_file), runs_dir=str(runs), folds="0-1", max_epochs=1,
                                  device="cpu", progress=False, n_permutations=200, n_bootstrap=50)
    return {"root": root, "settings": settings, "plan": plan_study(settings), "out": runs / "pool" / "experiments"}


def _row(report: str, heading: str, method: str) -> list[str]:
    """The cells of the `method` row of the first table after `heading` in report.md."""
    section = report[report.index(heading):]
    line = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
    return [cell.strip() for cell in line.split("|")[2:-1]]


def test_table4_stages_each_member_and_the_pool_and_scores_stations_of_the_labelled_member_only(study):
    report = (study["out"] / "report.md").read_text()
    assert "dataset: **study pool: tiny, dx (N-stage only)**" in report
    pooled_heading = "Pooled over all test scans"
    for method in ("TS1", "TS2", "TS3"):
        pooled = _row(report, pooled_heading, method)
        tiny = _row(report, "### tiny (station labels", method)
        dx = _row(report, "### dx (N-stage only", method)
        assert all(cell != "n/a" for cell in pooled[:N_STATION_COLUMNS - 1])  # AUC may be n/a for a hard 0/1 call
        assert pooled[:N_STATION_COLUMNS] == tiny[:N_STATION_COLUMNS]  # station metrics: the labelled member's
        assert dx[:N_STATION_COLUMNS] == ["n/a"] * N_STATION_COLUMNS
        for cells in (pooled, tiny, dx):
            assert cells[N_STATION_COLUMNS] != "n/a"  # N-stage accuracy of every member and of the pool
    with open(study["out"] / "methods.csv", newline="") as f:
        rows = {(r["method"], r["fold"], r["level"], r["metric"]): r for r in csv.DictReader(f)}
    for method in ("TS1", "TS2", "TS3"):
        # tested on two of three folds: 8 of 12 patients per member; stations of the labelled member only
        assert int(rows[(method, "pooled", "station", "accuracy")]["n"]) == 8 * 17
        assert int(rows[(method, "pooled", "n_stage", "accuracy")]["n"]) > 8


def test_table6_pseudo_label_ablation_rows_exist(study):
    report = (study["out"] / "report.md").read_text()
    section = report[report.index("## Table 6: pseudo-label loss (TS2)"):]
    for level in ("No", "Yes"):
        cells = _row(section, "Pooled over all test scans", f"Pseudo-labeling: {level}")
        assert cells[N_STATION_COLUMNS] != "n/a"
    with open(study["out"] / "paired_tests.csv", newline="") as f:
        pairs = {(r["method_a"], r["method_b"]) for r in csv.DictReader(f)}
    assert ("TS2", "TS2, no pseudo-labels") in pairs


def test_ts1_never_sees_the_n_stage_only_members_scans(study, tmp_path):
    """TS1 of the study is the run TS1 makes on the labelled member alone: same weights after its epoch, same
    test calls. (A member's folds are those it gets alone, train/folds.py.)"""
    planned = study["plan"].runs["TS1"]
    alone_config = study["root"] / "data" / "tiny" / "tiny.toml"
    alone = dataclasses.replace(planned.for_fold(0), dataset=str(alone_config), runs_dir=str(tmp_path),
                                run_name="ts1")
    assert run_training(alone) == 0
    pooled_state = load_checkpoint(planned.run_dir / "fold0" / "last.pt", map_location="cpu")["model"]
    alone_state = load_checkpoint(alone.run_dir / "last.pt", map_location="cpu")["model"]
    assert pooled_state.keys() == alone_state.keys()
    for name, tensor in pooled_state.items():
        assert torch.equal(tensor, alone_state[name]), name
    pooled = pd.read_csv(planned.run_dir / "fold0" / "predictions_test.csv", dtype={"patient_id": str})
    pooled = pooled[pooled["patient_id"].str.startswith("tiny/")]
    pooled = pooled.assign(patient_id=pooled["patient_id"].str.removeprefix("tiny/"))
    single = pd.read_csv(alone.run_dir / "predictions_test.csv", dtype={"patient_id": str})
    key = ["patient_id", "scan_id", "station_index"]
    both = pooled.merge(single, on=key, suffixes=("_pool", "_alone"))
    assert len(both) == len(single) == len(pooled) and len(single) > 0
    assert (both["station_pred_pool"] == both["station_pred_alone"]).all()
    assert (both["station_true_pool"] == both["station_true_alone"]).all()


def test_a_rerun_reuses_every_run(study):
    def mtimes():
        return {(name, k): (planned.run_dir / f"fold{k}" / "best.pt").stat().st_mtime_ns
                for name, planned in study["plan"].runs.items() for k in (0, 1)}

    before = mtimes()
    assert run_experiments(study["settings"]) == 0
    assert mtimes() == before
    with open(study["out"] / "runs.csv", newline="") as f:
        runs = list(csv.DictReader(f))
    assert len(runs) == 10 and all(r["reused"] == "True" for r in runs)  # five rows on two folds
    assert all((planned.run_dir / "fold0" / MARKER).is_file() for planned in study["plan"].runs.values())
    assert len(LABELS) == 12  # the fold sizes asserted above assume the tiny cohort's 12 patients
