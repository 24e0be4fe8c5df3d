"""A study's report: station metrics over the member with station labels only, N-stage over both, each member
also on its own. TS1 trained on every fold of the tiny study (tests/train/test_label_roles.py)."""

import csv

from evaluate.__main__ import main as evaluate_main
from tests.train.conftest import LABELS
from tests.train.test_label_roles import write_tiny_study
from train.__main__ import main as train_main


def _pooled_row(report: str, heading: str, method: str) -> str:
    """The `method` row of the first table after `heading` in report.md."""
    section = report[report.index(heading):]
    return next(line for line in section.splitlines() if line.startswith(f"| {method} |"))


def test_station_less_member_changes_no_station_metric_and_counts_for_n_stage(tmp_path):
    study = write_tiny_study(tmp_path / "data")
    runs = tmp_path / "runs"
    for fold in range(3):
        assert train_main(["ts1", "--dataset", str(study), "--fold", str(fold), "--runs-dir", str(runs)]) == 0
    out = tmp_path / "report"
    assert evaluate_main(["--dataset", str(study), "--run", str(runs / "pool" / "ts1"), "--out", str(out),
                          "--n-qa-scans", "0", "--n-permutations", "200", "--n-bootstrap", "200"]) == 0
    rows = list(csv.DictReader(open(out / "methods.csv")))
    pooled = {(r["method"].split(" ")[0], r["level"], r["metric"]): r for r in rows if r["fold"] == "pooled"}
    # every station of the labelled member's scans, none of dx's; both members' scans staged (one unknown side each)
    assert int(pooled[("TS1", "station", "accuracy")]["n"]) == len(LABELS) * 17
    assert int(pooled[("Thresholding", "station", "accuracy")]["n"]) == len(LABELS) * 17
    assert int(pooled[("TS1", "n_stage", "accuracy")]["n"]) > len(LABELS)
    report = (out / "report.md").read_text()
    assert "dataset: study pool: tiny, dx (N-stage only)" in report
    pool_row = _pooled_row(report, "## Methods, pooled", "TS1")
    tiny_row = _pooled_row(report, "### tiny", "TS1")
    dx_row = _pooled_row(report, "### dx", "TS1")
    n_station_columns = 5
    assert pool_row.split("|")[2:2 + n_station_columns] == tiny_row.split("|")[2:2 + n_station_columns]
    assert dx_row.split("|")[2:2 + n_station_columns] == [" n/a "] * n_station_columns
    assert "(exact, " in report or " patients) |" in report  # the clustered test beside McNemar
