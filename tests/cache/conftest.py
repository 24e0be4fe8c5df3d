"""Small real cache files for the cache tests: synthetic records written with the writer."""

from pathlib import Path

import numpy as np
import pytest

from cache.build_settings import BuildSettings
from cache.writer import ScanRecord, write_scan
from tests.preprocess.synthetic_scan import synthetic_record

TINY_SHAPE = (24, 30, 36)


def tiny_record(patient_id: str = "p1", scan_id: str = "s1", seed: int = 0, spacing_mm: float = 2.0) -> ScanRecord:
    return synthetic_record(patient_id, scan_id, np.random.default_rng(seed), TINY_SHAPE, spacing_mm, dataset="tiny",
                            build=BuildSettings(spacing_mm=spacing_mm))


@pytest.fixture
def record() -> ScanRecord:
    return tiny_record()


@pytest.fixture
def cache_file(tmp_path, record) -> Path:
    return write_scan(tmp_path / "tiny" / "p1__s1.h5", record)
