"""Settings of `python -m preprocess`: which dataset, and how its scans become cache files."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class PreprocessSettings:
    """One preprocessing run. A dataset config's `[preprocess]` table sets these per dataset."""

    dataset: str = field(default="demo", metadata={"help": "config name in configs/datasets/ or a TOML path"})
    root: str = field(default="", metadata={"help": "data root (else $LNSTAGE_ROOT_<NAME>, else the config)"})
    cache_root: str = field(default="", metadata={"help": "cache root (else $LNSTAGE_CACHE_ROOT, else the config)"})
    check: bool = field(default=False, metadata={"help": "validate the manifest, print a summary, process nothing"})
    spacing_mm: float = field(default=1.0, metadata={"help": "isotropic voxel size of the cache, in mm"})
    crop_margin_mm: float = field(default=20.0, metadata={"help": "margin around the lungs+trachea box, mm"})
    registration_preset: Literal["full", "demo"] = field(
        default="full", metadata={"help": "registration settings: full (finest level = data) or demo (4 mm)"}
    )
    device: Literal["auto", "cpu", "cuda"] = field(default="auto", metadata={"help": "registration device"})
