"""Shared fixtures: where the real third-party data lives (../shared/data beside the checkout)."""

from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"real test data not found at {SHARED_DATA}; CI and developers keep ../shared beside the repo")
    return SHARED_DATA
