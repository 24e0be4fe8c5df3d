"""The train -> evaluate contract on real files: TS1 trained on every fold of the tiny study, then the report
(conftest `trained_study_report`, shared with tests/evaluate/test_study_report.py)."""

from tests.train.conftest import LABELS


def test_report_of_a_trained_run(trained_study_report):
    out = trained_study_report.out
    pooled = trained_study_report.pooled()
    # every scan is a test scan once; one has an unknown side, and every station with a label is scored
    assert int(pooled[("TS1", "station", "accuracy")]["n"]) == len(LABELS) * 17
    assert int(pooled[("Thresholding", "station", "accuracy")]["n"]) == len(LABELS) * 17
    # malignant cubes glow at SUV 8 over 0.5 ml, benign ones stay below 1.5: the built-in segmenter finds exactly
    # the malignant ones (the tiny cohort's SUVmax attributes are constant, so thresholding cannot)
    assert float(pooled[("Lesion", "station", "balanced_accuracy")]["value"]) == 1.0
    assert "TS1 vs Thresholding" in (out / "report.md").read_text()
    assert len(list(out.glob("qa_*.png"))) == 1  # one QA overlay asked for (--n-qa-scans 1), one written
