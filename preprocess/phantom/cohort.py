"""`generate_cohort`: the whole synthetic dataset (manifest, scans, truth, atlas bank) from one seed."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np

from cache.grid import Grid
from cache.manifest import write_manifest
from cache.run_log import progress
from cache.settings import from_toml, read_toml
from preprocess.phantom.deformation import field_grid
from preprocess.phantom.delineation import delineate
from preprocess.phantom.labels import draw_stage_labels
from preprocess.phantom.nodes import BENIGN_STATES
from preprocess.phantom.scan import SimulatedScan, simulate_scan
from preprocess.phantom.settings import PhantomSettings
from preprocess.phantom.writer import write_atlas, write_patient_scan

MARKER = "phantom.toml"
STATE_PREVIEW = "benign_states.png"  # with --preview: the first patient of each benign-uptake state
OUTPUT_FOLDERS = ("scans", "truth", "atlases", "preview")
KNOWN_ENTRIES = (*OUTPUT_FOLDERS, "manifest.csv", MARKER, "cache", "phantom.log")  # log of preprocess.phantom
# Random streams: (seed, stream, index) so a patient is the same whatever the cohort size.
PATIENT_STREAM, ATLAS_STREAM, SELECTION_STREAM, LABEL_STREAM = 0, 1, 2, 3


def cohort_is_complete(root: str | Path, settings: PhantomSettings | None = None) -> bool:
    """True when `root` holds a finished phantom cohort (the marker file is written last), made with `settings`
    when given (where it is written and whether previews were drawn do not count). A marker that lacks one of the
    settings was written by an older phantom, which drew other uptake: that cohort is not the one asked for."""
    marker = Path(root) / MARKER
    if not (marker.is_file() and (Path(root) / "manifest.csv").is_file()):
        return False
    if settings is None:
        return True
    if set(read_toml(marker)) != {f.name for f in dataclasses.fields(PhantomSettings)}:
        return False
    made = dataclasses.replace(from_toml(PhantomSettings, marker), out=settings.out, preview=settings.preview)
    return made == settings


def patient_ids(index: int) -> tuple[str, str]:
    return f"demo-{index + 1:03d}", f"demo-{index + 1:03d}-s0"


def _prepare(out: Path) -> None:
    """Clear the outputs of an earlier (possibly unfinished) cohort; refuse a folder that holds other things.

    A dataset's cache folder inside the root (`cache_root = "cache"` in the demo config) is left alone.
    """
    if out.exists() and not (out / MARKER).is_file():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in KNOWN_ENTRIES)
        if foreign:
            raise FileExistsError(f"{out} is not a phantom cohort folder (it holds {', '.join(foreign[:5])} and no "
                                  f"{MARKER}); choose an empty or new folder for --out")
    (out / MARKER).unlink(missing_ok=True)  # the marker is written last: absent while the cohort is incomplete
    for name in OUTPUT_FOLDERS:
        shutil.rmtree(out / name, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)


def _chosen(count: int, fraction: float, seed: int, which: int) -> set[int]:
    """A seeded subset of round(fraction * count) indices."""
    order = np.random.default_rng([seed, SELECTION_STREAM, which]).permutation(count)
    return set(int(i) for i in order[: int(round(fraction * count))])


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return json.dumps(value)  # numbers, and strings as TOML basic strings


def _write_marker(out: Path, settings: PhantomSettings) -> None:
    """phantom.toml: the settings that made this cohort (written last: its presence means the cohort is complete)."""
    lines = ["# settings of the phantom cohort in this folder (python -m preprocess.phantom)"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in dataclasses.asdict(settings).items()]
    (out / MARKER).write_text("\n".join(lines) + "\n", encoding="utf-8")


def draw_patient(settings: PhantomSettings, grid: Grid, index: int, dicom_pet: bool) -> SimulatedScan:
    """Patient `index` of the cohort of `settings`, from its own random streams (the same whatever the cohort size)."""
    rng = np.random.default_rng([settings.seed, PATIENT_STREAM, index])
    labels = draw_stage_labels(np.random.default_rng([settings.seed, LABEL_STREAM, index]))
    return simulate_scan(rng, grid, labels, settings.pet_factor, dicom_pet=dicom_pet, day=index, settings=settings)


def dicom_pet_patients(settings: PhantomSettings) -> set[int]:
    """Indices of the patients whose PET is written as a DICOM series."""
    return _chosen(settings.patients, settings.dicom_pet_fraction, settings.seed, 0)


def generate_cohort(settings: PhantomSettings) -> Path:
    """Write the cohort of `settings` to `settings.out` and return that folder.

    Layout: manifest.csv, scans/<scan_id>/{ct,totalseg,lesions}.nii.gz + pet.nii.gz or pet_dicom/,
    truth/<scan_id>/{stations.nii.gz,nodes.csv}, atlases/atlas-NN/{ct,totalseg,stations}.nii.gz + atlas.toml.
    """
    out = Path(settings.out)
    _prepare(out)
    grid = field_grid(settings.extent_mm, settings.spacing_mm)
    dicom = dicom_pet_patients(settings)
    listed = _chosen(settings.patients, settings.station_list_fraction, settings.seed, 1)
    rows = []
    by_state: dict[str, tuple[str, SimulatedScan]] = {}  # the first patient of each benign-uptake state
    for i in progress(range(settings.patients), desc="phantom patients", unit="scan"):
        scan = draw_patient(settings, grid, i, dicom_pet=i in dicom)
        patient_id, scan_id = patient_ids(i)
        rows.append(write_patient_scan(out, patient_id, scan_id, scan, list_stations=i in listed))
        if settings.preview:
            from preprocess.phantom.preview import write_preview

            write_preview(scan, out / "preview" / f"{scan_id}.png", title=scan_id)
            by_state.setdefault(scan.benign_uptake.state, (scan_id, scan))
    if by_state:
        from preprocess.phantom.preview import write_state_preview

        write_state_preview([by_state[s] for s in BENIGN_STATES if s in by_state], out / "preview" / STATE_PREVIEW)
    write_manifest(out / "manifest.csv", rows)
    for a in progress(range(settings.atlases), desc="phantom atlases", unit="atlas"):
        rng = np.random.default_rng([settings.seed, ATLAS_STREAM, a])
        scan = simulate_scan(rng, grid, None, settings=settings)
        name = f"atlas-{a + 1:02d}"
        write_atlas(out / "atlases" / name, scan, delineate(scan.stations, settings.spacing_mm, rng), name,
                    settings.seed)
    _write_marker(out, settings)
    return out
