"""A tiny phantom cohort (4 mm, 4 patients, 5 atlases), generated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from preprocess.phantom.cohort import generate_cohort
from preprocess.phantom.settings import PhantomSettings

TINY = dict(patients=4, atlases=5, seed=11, spacing_mm=4.0, pet_spacing_mm=4.0, dicom_pet_fraction=0.5,
            station_list_fraction=0.75)


@pytest.fixture(scope="session")
def tiny_cohort(tmp_path_factory) -> Path:
    return generate_cohort(PhantomSettings(out=str(tmp_path_factory.mktemp("phantom") / "demo"), **TINY))
