"""The memory benchmark (benchmarks/memory.py, also run by benchmarks/gpu_checks.sh on CUDA) runs end to end on
CPU with a tiny phantom: registration per configuration in its own process, the same checkout compared with
itself, and the whole `python -m preprocess`."""

import importlib.util
from pathlib import Path

import pytest

from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def benchmark():
    spec = importlib.util.spec_from_file_location("memory_benchmark", REPO / "benchmarks" / "memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_memory_benchmark_measures_and_compares_on_cpu(benchmark, tmp_path):
    root = tmp_path / "phantom"
    generate_cohort(PhantomSettings(out=str(root), patients=1, atlases=2, spacing_mm=6.0, pet_spacing_mm=6.0))
    result = benchmark.main(["--root", str(root), "--configs", "6:2", "6:1", "--preset", "demo", "--atlas-batch", "1",
                             "--compare-tree", str(REPO), "--preprocess-spacings", "6"])
    two, one = result["rows"]
    assert two["labels_equal"] and two["new"]["memory"]["atlas_batch"] == 1 and one["atlases"] == 1
    assert two["new"]["peak_rss_gib"] > two["new"]["rss_before_gib"] > 0.1 and two["new"]["voxels"] > 1000
    chain = result["preprocess"][0]
    assert chain["qc_memory"]["peak_rss_gib"] > 0.1 and chain["timings_s"]["register"] > 0
