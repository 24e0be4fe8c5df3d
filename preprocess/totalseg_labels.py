"""TotalSegmentator label maps (id -> structure name) per version, read from `configs/totalsegmentator/`.

Structures are always handled by name inside the tool; ids matter only when reading or writing a
multilabel file. The canonical ids of the tool are those of v2 ("total" task).
"""

from __future__ import annotations

import functools

from cache.settings import read_toml
from configs import CONFIG_DIR

LABELMAP_DIR = CONFIG_DIR / "totalsegmentator"


@functools.cache
def label_map(version: str = "v2") -> dict[int, str]:
    """Label id -> structure name for TotalSegmentator `version` ("v1" or "v2", task "total")."""
    path = LABELMAP_DIR / f"{version}_total.toml"
    if not path.is_file():
        available = ", ".join(sorted(p.stem.removesuffix("_total") for p in LABELMAP_DIR.glob("*_total.toml")))
        raise ValueError(f"no TotalSegmentator label map for version {version!r} ({path}); available: {available}")
    return {int(k): v for k, v in read_toml(path)["labels"].items()}


def label_ids(version: str = "v2") -> dict[str, int]:
    """Structure name -> label id for `version`."""
    return {name: i for i, name in label_map(version).items()}
