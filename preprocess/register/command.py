"""One scan from files: `python -m preprocess.register --atlas-bank DIR --ct CT --totalseg MASKS --out OUT.nii.gz`.

The scan is resampled and cropped exactly as `python -m preprocess` does it, registered to every atlas, and the
fused station labels are written on the CT's own grid (nearest neighbour; 0 outside the mediastinum crop).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import SimpleITK as sitk

from cache.build_settings import RegistrationPreset
from cache.devices import Device
from preprocess.images import read_image
from preprocess.register.atlas_bank import load_atlas_bank, read_cropped_scan
from preprocess.register.fusion import StationMap
from preprocess.register.mapping import map_stations
from preprocess.register.qa import qa_figure, qa_summary
from preprocess.register.settings import RegistrationSettings
from preprocess.resample import resample_like
from preprocess.settings import ATLAS_BATCH_HELP, MEMORY_LIMIT_HELP


@dataclass(frozen=True)
class RegisterCommand:
    """Inputs and outputs of one registration run."""

    atlas_bank: str = field(
        default="", metadata={"help": "atlas bank folder (format: docs/architecture.md#the-atlas-bank)"}
    )
    ct: str = field(default="", metadata={"help": "CT image file or DICOM folder"})
    totalseg: str = field(default="", metadata={"help": "TotalSegmentator multilabel file or folder of masks"})
    out: str = field(default="", metadata={"help": "output station label NIfTI (on the CT's grid)"})
    qa_png: str = field(default="", metadata={"help": "optional QA picture (PNG)"})
    qa_json: str = field(default="", metadata={"help": "optional QA records and timings (JSON)"})
    preset: RegistrationPreset = field(default="full", metadata={"help": "registration preset"})
    spacing_mm: float = field(default=1.0, metadata={"help": "isotropic working spacing, mm"})
    crop_margin_mm: float = field(default=20.0, metadata={"help": "margin around the lungs+trachea box, mm"})
    totalseg_version: Literal["auto", "v1", "v2"] = field(default="auto", metadata={"help": "ids of the masks"})
    device: Device = field(default="auto", metadata={"help": "registration device"})
    atlas_batch: str = field(default="auto", metadata={"help": ATLAS_BATCH_HELP})
    max_memory_gb: float = field(
        default=0.0, metadata={"help": "memory the registration may use, GiB (0: what the device has available); "
                                       + MEMORY_LIMIT_HELP}
    )


def register_files(command: RegisterCommand, settings: RegistrationSettings) -> StationMap:
    """Register the bank to the scan of `command`, write the station labels (and QA), return the map."""
    missing = [name for name in ("atlas_bank", "ct", "totalseg", "out") if not getattr(command, name)]
    if missing:
        raise ValueError(f"missing required option(s): {', '.join('--' + m.replace('_', '-') for m in missing)}")
    scan = read_cropped_scan(Path(command.ct), Path(command.totalseg), command.spacing_mm, command.crop_margin_mm,
                             command.totalseg_version)
    bank = load_atlas_bank(command.atlas_bank, command.spacing_mm, command.crop_margin_mm)
    station_map = map_stations(scan.ct_hu, scan.structures, scan.grid, bank, settings, command.device,
                               command.atlas_batch, command.max_memory_gb, command.ct)
    labels = sitk.GetImageFromArray(station_map.labels)
    scan.grid.apply_to_sitk(labels)
    out = Path(command.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(resample_like(labels, read_image(Path(command.ct)), "nearest", 0), str(out))
    if command.qa_png:
        summary = qa_summary(station_map.qa)
        title = ", ".join(f"{stage} Dice {value:.3f}" for stage, value in summary.items())
        qa_figure(scan.ct_hu, station_map.labels, command.qa_png, title, grid=scan.grid)
    if command.qa_json:
        Path(command.qa_json).write_text(json.dumps({"qa": station_map.qa, "timings_s": station_map.timings_s,
                                                     "memory": station_map.memory}, indent=1))
    return station_map
