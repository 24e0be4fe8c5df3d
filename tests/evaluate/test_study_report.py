"""A study's report: station metrics over the member with station labels only, N-stage over both, each member
also on its own. TS1 trained on every fold of the tiny study once (conftest `trained_study_report`)."""

from tests.train.conftest import LABELS


def _pooled_row(report: str, heading: str, method: str) -> str:
    """The `method` row of the first table after `heading` in report.md."""
    section = report[report.index(heading):]
    return next(line for line in section.splitlines() if line.startswith(f"| {method} |"))


def test_station_less_member_changes_no_station_metric_and_counts_for_n_stage(trained_study_report):
    out = trained_study_report.out
    pooled = trained_study_report.pooled()
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


def test_paired_tests_table_has_the_clustered_tests_over_the_patients_they_swap(trained_study_report):
    report = (trained_study_report.out / "report.md").read_text()
    section = report[report.index("## Paired tests"):].splitlines()
    header = next(line for line in section if line.startswith("| Comparison |")).split(" | ")
    assert header[2:4] == ["McNemar p", "LNS clustered p"] and header[5:7] == ["N-stage clustered p",
                                                                              "scans (patients) |"]
    row = next(line for line in section if line.startswith("| TS1 vs Thresholding")).split(" | ")
    # stations of the labelled member's patients only; N-stage over the scans of both members' patients
    assert row[3].endswith(f" {len(LABELS)} patients)")
    scans, patients = row[6].removesuffix(" |").removesuffix(")").split(" (")
    assert int(patients) > len(LABELS) and int(scans) >= int(patients)
