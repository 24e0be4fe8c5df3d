"""Shared fixture: TS1 trained on every fold of the tiny study and its report written once, for the tests that
read the report folder (training three folds is what costs; each test would otherwise repeat it)."""

import csv
from dataclasses import dataclass
from pathlib import Path

import pytest

from evaluate.__main__ import main as evaluate_main
from tests.train.test_label_roles import write_tiny_study
from train.__main__ import main as train_main


@dataclass(frozen=True)
class TrainedReport:
    """The study file (members "tiny" with station labels, "dx" without), the runs folder and the report."""

    study: Path
    runs: Path
    out: Path

    def pooled(self) -> dict[tuple[str, str, str], dict[str, str]]:
        """methods.csv's pooled rows by (method's first word, level, metric)."""
        rows = csv.DictReader(open(self.out / "methods.csv"))
        return {(r["method"].split(" ")[0], r["level"], r["metric"]): r for r in rows if r["fold"] == "pooled"}


@pytest.fixture(scope="session")
def trained_study_report(tmp_path_factory) -> TrainedReport:
    root = tmp_path_factory.mktemp("trained_study")
    study = write_tiny_study(root / "data")
    runs = root / "runs"
    for fold in range(3):
        assert train_main(["ts1", "--dataset", str(study), "--fold", str(fold), "--runs-dir", str(runs)]) == 0
    out = root / "report"
    assert evaluate_main(["--dataset", str(study), "--run", str(runs / "pool" / "ts1"), "--out", str(out),
                          "--n-qa-scans", "1", "--n-permutations", "200", "--n-bootstrap", "200"]) == 0
    return TrainedReport(study=study, runs=runs, out=out)
