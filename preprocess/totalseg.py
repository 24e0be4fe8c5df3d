"""TotalSegmentator masks as one uint8 label image in the tool's canonical (v2) ids, on the CT grid.

Input: a multilabel file (v1 or v2 ids; the label table in its NIfTI header extension names them, else the
`version` setting says which) or a folder of per-structure files `<name>.nii.gz`. Ids are only a file encoding:
every label is mapped by structure NAME (v1 names translated to v2 by `configs/totalsegmentator/v1_total.toml`).
Masks on another grid are resampled nearest-neighbour. Missing masks are made by the `TotalSegmentator`
command when it is installed.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from cache.settings import read_toml
from preprocess.images import IMAGE_SUFFIXES, ImageReadError, read_image
from preprocess.nifti_labels import read_label_extension
from preprocess.resample import resample_like
from preprocess.totalseg_labels import LABELMAP_DIR, label_ids, label_map

Version = Literal["auto", "v1", "v2"]
GEOMETRY_TOLERANCE = 1e-4  # relative; below this two grids are the same grid


class TotalSegError(ValueError):
    """Masks that are missing, or whose labels cannot be mapped to structure names."""


@dataclass(frozen=True)
class TotalSegMasks:
    """The label image (uint8, v2 ids, reference grid) and how it was read."""

    image: sitk.Image
    source: str
    naming: str  # where the id -> name map came from
    dropped: tuple[str, ...]  # structures with no v2 counterpart, left out
    resampled: bool

    def provenance(self) -> dict:
        return {"source": self.source, "naming": self.naming, "dropped": list(self.dropped),
                "resampled_to_ct_grid": self.resampled}


@functools.cache
def v2_name_of() -> dict[str, str]:
    """Structure name (v1 or v2) -> v2 name; "" for v1 structures that v2 does not have."""
    names = {name: name for name in label_ids("v2")}
    names.update(read_toml(LABELMAP_DIR / "v1_total.toml").get("to_v2", {}))
    return names


def same_grid(a: sitk.Image, b: sitk.Image) -> bool:
    if a.GetSize() != b.GetSize():
        return False
    scale = max(max(a.GetSpacing()), 1.0)
    return all(
        np.allclose(x, y, rtol=0, atol=GEOMETRY_TOLERANCE * s)
        for x, y, s in ((a.GetSpacing(), b.GetSpacing(), scale), (a.GetOrigin(), b.GetOrigin(), scale),
                        (a.GetDirection(), b.GetDirection(), 1.0))
    )


def _on_reference(labels: sitk.Image, reference: sitk.Image) -> tuple[sitk.Image, bool]:
    """`labels` (uint8) on the reference grid: geometry copied when equal, else nearest-neighbour resampled."""
    labels = sitk.Cast(labels, sitk.sitkUInt8)
    if same_grid(labels, reference):
        labels.CopyInformation(reference)
        return labels, False
    return resample_like(labels, reference, "nearest", 0), True


def _id_names(path: Path, version: Version) -> tuple[dict[int, str], str]:
    """Id -> name map of a multilabel file: its header label table, else the label map of `version`."""
    table = read_label_extension(path)
    if table is not None:
        if version != "auto":
            expected = label_map(version)
            conflicts = [i for i, name in table.items() if expected.get(i) not in (None, name)]
            if conflicts:
                i = conflicts[0]
                raise TotalSegError(
                    f"{path}: its header label table says id {i} is {table[i]!r}, but TotalSegmentator {version} "
                    f"calls it {expected[i]!r}; set totalseg_version = 'auto' to trust the file, or fix the setting"
                )
        return table, "NIfTI header label table"
    if version == "auto":
        raise TotalSegError(
            f"{path}: no label table in the header, so TotalSegmentator v1 and v2 ids cannot be told apart; "
            "set totalseg_version to 'v1' or 'v2' in the dataset config"
        )
    return label_map(version), f"TotalSegmentator {version} label map (setting)"


def _lookup_table(id_names: dict[int, str], present: np.ndarray, path: Path) -> tuple[np.ndarray, list[str]]:
    """uint8 table file id -> v2 id for the ids present; names with no v2 counterpart map to 0."""
    v2_ids, v2_names = label_ids("v2"), v2_name_of()
    table = np.zeros(int(present.max()) + 1, dtype=np.uint8)
    dropped = []
    for file_id in present[present > 0]:
        name = id_names.get(int(file_id))
        if name is None:
            raise TotalSegError(f"{path}: label id {file_id} has no name in the label map used; wrong "
                                "totalseg_version, or not a TotalSegmentator 'total' output?")
        if name not in v2_names:
            raise TotalSegError(f"{path}: structure {name!r} (id {file_id}) is not a TotalSegmentator 'total' class")
        if v2_names[name]:
            table[file_id] = v2_ids[v2_names[name]]
        else:
            dropped.append(name)
    return table, dropped


def _read_multilabel(path: Path, reference: sitk.Image, version: Version) -> TotalSegMasks:
    image = read_image(path)
    if image.GetPixelID() not in (sitk.sitkUInt8, sitk.sitkInt8, sitk.sitkUInt16, sitk.sitkInt16,
                                  sitk.sitkUInt32, sitk.sitkInt32, sitk.sitkUInt64, sitk.sitkInt64):
        raise TotalSegError(f"{path}: pixel type {image.GetPixelIDTypeAsString()} is not an integer label image")
    values = sitk.GetArrayViewFromImage(image)
    if values.min() < 0:
        raise TotalSegError(f"{path}: negative label ids")
    id_names, naming = _id_names(path, version)
    present = np.unique(values)
    table, dropped = _lookup_table(id_names, present, path)
    labels = sitk.GetImageFromArray(table[values])
    labels.CopyInformation(image)
    labels, resampled = _on_reference(labels, reference)
    return TotalSegMasks(labels, str(path), naming, tuple(dropped), resampled)


def _structure_name(path: Path) -> str:
    name = path.name
    for suffix in sorted(IMAGE_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return name


def _read_folder(folder: Path, reference: sitk.Image) -> TotalSegMasks:
    """Per-structure binary files named `<structure>.nii.gz` (v1 or v2 names); in v2 id order, later ids win
    where masks overlap. Files that are no 'total' class (other tasks' outputs) are an error, not ignored."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise TotalSegError(f"{folder}: no mask files (<structure>.nii.gz) in this folder")
    v2_ids, v2_names = label_ids("v2"), v2_name_of()
    unknown = [_structure_name(p) for p in files if _structure_name(p) not in v2_names]
    if unknown:
        raise TotalSegError(f"{folder}: {', '.join(unknown)} are not TotalSegmentator 'total' structure names "
                            "(v1 or v2); move other files out of the mask folder")
    named = sorted(((v2_names[_structure_name(p)], p) for p in files), key=lambda t: v2_ids.get(t[0], 0))
    dropped = tuple(_structure_name(p) for name, p in named if not name)
    labels = np.zeros(reference.GetSize()[::-1], dtype=np.uint8)
    any_resampled = False
    for name, path in named:
        if not name:
            continue
        mask, resampled = _on_reference(sitk.Cast(read_image(path) > 0, sitk.sitkUInt8), reference)
        any_resampled |= resampled
        labels[sitk.GetArrayViewFromImage(mask) > 0] = v2_ids[name]
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(reference)
    return TotalSegMasks(image, str(folder), "file names", dropped, any_resampled)


def run_totalsegmentator(ct_path: Path, out_file: Path) -> Path:
    """Run the `TotalSegmentator` command on the CT (file or DICOM folder), writing a multilabel file."""
    command = ["TotalSegmentator", "-i", str(ct_path), "-o", str(out_file), "--ml"]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not out_file.is_file():
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-5:])
        raise TotalSegError(f"{ct_path}: `{' '.join(command)}` failed (exit {result.returncode}): {tail}")
    return out_file


def load_totalseg(path: Path | None, reference: sitk.Image, version: Version = "auto",
                  ct_path: Path | None = None) -> TotalSegMasks:
    """Masks at `path` (multilabel file or folder) on the grid of `reference`, made by TotalSegmentator from
    `ct_path` when `path` is missing and the command is installed."""
    if path is not None and Path(path).is_dir():
        return _read_folder(Path(path), reference)
    if path is not None and Path(path).is_file():
        return _read_multilabel(Path(path), reference, version)
    expected = f"a multilabel file {path} or a folder of <structure>.nii.gz" if path else "a 'totalseg' entry"
    if ct_path is None or shutil.which("TotalSegmentator") is None:
        raise TotalSegError(
            f"TotalSegmentator masks not found: expected {expected}; the `TotalSegmentator` command is not on PATH "
            f"to make them (pip install TotalSegmentator, or run: TotalSegmentator -i CT -o "
            f"{path or 'totalseg.nii.gz'} --ml)"
        )
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        masks = _read_multilabel(run_totalsegmentator(Path(ct_path), Path(path)), reference, version)
        return masks
    with tempfile.TemporaryDirectory() as work:
        out = run_totalsegmentator(Path(ct_path), Path(work) / "totalseg.nii.gz")
        return _read_multilabel(out, reference, version)


def read_totalseg(path: Path | None, reference: sitk.Image, version: Version = "auto",
                  ct_path: Path | None = None) -> sitk.Image:
    """uint8 label image in canonical v2 ids on the grid of `reference` (see `load_totalseg`)."""
    try:
        return load_totalseg(path, reference, version, ct_path).image
    except ImageReadError as error:
        raise TotalSegError(str(error)) from error
