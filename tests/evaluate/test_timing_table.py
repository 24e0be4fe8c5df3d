"""Table 7 shows the peak memory per scan that the pipeline recorded in each cache file's /qc."""

import dataclasses
import math

import numpy as np

from cache.writer import write_scan
from evaluate.timing_table import (
    PREPROCESSING,
    per_scan,
    preprocessing_steps,
    recorded_peak_memory,
    recorded_step_times,
    timing_markdown,
    write_timing_csv,
)
from tests.preprocess.synthetic_scan import synthetic_record


def test_the_preprocessing_total_row_shows_the_largest_recorded_peak_memory(tmp_path):
    paths = []
    for i, memory in enumerate(({"peak_rss_gib": 3.1, "estimate_gib": 2.0}, {"peak_rss_gib": 4.25}, None)):
        record = synthetic_record(f"p{i}", "s0", np.random.default_rng(i), shape_zyx=(24, 24, 24), spacing_mm=4.0)
        qc = {"timings_s": {"register": 10.0 + i}} | ({"memory": memory} if memory else {})
        paths.append(write_scan(tmp_path / f"p{i}__s0.h5", dataclasses.replace(record, qc=qc)))
    memory = recorded_peak_memory(paths)
    np.testing.assert_array_equal(memory["peak_rss_gib"][:2], [3.1, 4.25])
    assert math.isnan(memory["peak_rss_gib"][2]) and np.isnan(memory["cuda_peak_gib"]).all()
    steps = [*preprocessing_steps(recorded_step_times(paths), memory), per_scan("TS1", "inference", 3.0, 3, "t")]
    table = timing_markdown(steps)
    assert f"| {PREPROCESSING} | **Total** | **11.0** | | | | resident 4.25 GiB |" in table
    assert "| TS1 | **Total** (with preprocessing) | **12.0** | | | |  |" in table
    write_timing_csv(steps, tmp_path / "timings.csv")
    assert "register,11.0,1.0,3,cache /qc/timings_s,4.25,nan" in (tmp_path / "timings.csv").read_text()
