"""`--preview` writes one PNG of mid-slices per scan."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image

from preprocess.phantom.__main__ import main


def test_preview_writes_a_png_per_scan(tmp_path: Path):
    out = tmp_path / "demo"
    assert main(["--out", str(out), "--patients", "2", "--atlases", "0", "--spacing-mm", "4", "--preview"]) == 0
    pictures = sorted((out / "preview").glob("*.png"))
    assert [p.name for p in pictures] == ["demo-001-s0.png", "demo-002-s0.png"]
    image = matplotlib.image.imread(pictures[0])
    assert image.shape[0] > 200 and image.shape[1] > 400
    assert image[..., :3].std() > 0.05  # not a blank canvas
