"""The GPU benchmark script (benchmarks/gpu_registration.py) runs end to end on CPU with tiny sizes."""

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "gpu_registration.py"


@pytest.fixture(scope="module")
def gpu_script():
    spec = importlib.util.spec_from_file_location("gpu_registration", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_script_times_and_compares_on_cpu(gpu_script, tmp_path):
    out = tmp_path / "gpu.json"
    result = gpu_script.main(["--device", "cpu", "--json", str(out), "--root", str(tmp_path / "cohorts"),
                              "--scans", "1", "--spacing-mm", "6", "--compare-spacing-mm", "6", "--preset", "demo",
                              "--smoke", "--extent-mm", "240", "200", "180"])
    assert json.loads(out.read_text())["device_name"] == "cpu"
    assert result["comparison"]["label_agreement"] == 1.0  # the same device twice: identical labels
    assert result["seconds_per_scan_first"] > 0 and len(result["runs"]) == 1
