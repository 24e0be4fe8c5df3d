"""`--preview` writes one PNG of mid-slices per scan."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from preprocess.phantom.__main__ import main
from preprocess.phantom.cohort import STATE_PREVIEW


def test_preview_writes_a_png_per_scan_and_one_of_the_benign_uptake_states(tmp_path: Path):
    out = tmp_path / "demo"
    argv = ["--out", str(out), "--patients", "2", "--atlases", "0", "--spacing-mm", "4", "--preview",
            "--benign-state-fractions", "0", "0.5", "0.5"]
    assert main(argv) == 0
    pictures = sorted((out / "preview").glob("*.png"))
    assert [p.name for p in pictures] == [STATE_PREVIEW, "demo-001-s0.png", "demo-002-s0.png"]
    image = matplotlib.image.imread(pictures[1])
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # not a blank canvas
    states = matplotlib.image.imread(pictures[0])
    assert states.shape[0] > 250 and states[..., :3].std() > 0.05  # one row per state present, at least one
