"""Reading CT and PET: a DICOM series folder or a NIfTI/NRRD/MHA file, geometry (origin, spacing, direction)
kept exactly as SimpleITK reads it, and no metadata carried along (no DICOM tag can reach a written file).

Nothing silently wrong gets through: a NIfTI file shorter than its header says (SimpleITK fills the missing
part of a truncated `.nii.gz` with zeros) and NaN or infinite voxels are refused, naming the file and the fix.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from preprocess.dicom_series import read_headers, read_series, series_files, strip_metadata
from preprocess.suv import SuvSettings, read_suv_series

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class ImageReadError(ValueError):
    """A path that is neither a readable image file nor a DICOM series folder."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


_READ_BYTES = 1 << 22


@dataclass(frozen=True)
class _NiftiLayout:
    byte_order: str  # "<" or ">"
    vox_offset: int
    n_bytes: int  # voxel bytes
    float_dtype: np.dtype | None  # the voxel type when floating point (NaN and infinity possible), else None


_NIFTI_FLOATS = {16: "f4", 64: "f8"}  # NIfTI datatype codes FLOAT32, FLOAT64


def _nifti_layout(header: bytes, path: Path) -> _NiftiLayout:
    """Where a NIfTI-1 or NIfTI-2 file's voxels start, how many bytes they take, and their float type if any."""
    for order in "<>":
        if len(header) >= 4 and struct.unpack(order + "i", header[:4])[0] in (348, 540):
            break
    else:
        raise ImageReadError(f"{path}: not a NIfTI file (its header size field is neither 348 nor 540)")
    if struct.unpack(order + "i", header[:4])[0] == 348:
        datatype, bitpix = struct.unpack(order + "2h", header[70:74])
        dim = struct.unpack(order + "8h", header[40:56])
        vox_offset = int(struct.unpack(order + "f", header[108:112])[0])
    else:
        datatype, bitpix = struct.unpack(order + "2h", header[12:16])
        dim = struct.unpack(order + "8q", header[16:80])
        vox_offset = struct.unpack(order + "q", header[168:176])[0]
    n_dims = min(max(int(dim[0]), 0), 7)
    voxels = int(np.prod([max(int(d), 1) for d in dim[1:1 + n_dims]], dtype=np.int64))
    float_type = _NIFTI_FLOATS.get(int(datatype))
    return _NiftiLayout(order, vox_offset, voxels * max(int(bitpix), 0) // 8,
                        np.dtype(order + float_type) if float_type else None)


def _count_non_finite(stream, layout: _NiftiLayout, already: bytes) -> tuple[int, int]:
    """(bytes read in all, NaN or infinite voxels) of the rest of a NIfTI stream, `already` its first bytes."""
    size, bad = len(already), 0
    pending = already[layout.vox_offset:] if layout.float_dtype is not None else b""
    while block := stream.read(_READ_BYTES):
        size += len(block)
        if layout.float_dtype is None:
            continue
        pending += block
        usable = len(pending) - len(pending) % layout.float_dtype.itemsize
        bad += int((~np.isfinite(np.frombuffer(pending[:usable], layout.float_dtype))).sum())
        pending = pending[usable:]
    if layout.float_dtype is not None and pending:
        usable = len(pending) - len(pending) % layout.float_dtype.itemsize
        bad += int((~np.isfinite(np.frombuffer(pending[:usable], layout.float_dtype))).sum())
    return size, bad


def check_nifti(path: Path) -> None:
    """Refuse a NIfTI file (`.nii`, `.nii.gz`) that holds fewer bytes than its header promises, whose gzip
    stream ends early or is damaged, or whose float voxels hold NaN or infinity (SimpleITK would read those as
    0 and a truncated `.nii.gz` with zeros). Other formats are left to SimpleITK and `check_finite`."""
    name = path.name.lower()
    if not name.endswith((".nii", ".nii.gz")):
        return
    fix = "the file is truncated or damaged: copy it again from its source"
    try:
        with (open(path, "rb") if name.endswith(".nii") else gzip.open(path, "rb")) as stream:
            header = stream.read(max(_READ_BYTES, 540))
            layout = _nifti_layout(header, path)
            size, bad = _count_non_finite(stream, layout, header)
    except (EOFError, OSError, zlib.error, struct.error) as error:
        raise ImageReadError(f"{path}: cannot be read to its end ({error}); {fix}") from None
    expected = layout.vox_offset + layout.n_bytes
    if size < expected:
        raise ImageReadError(f"{path}: holds {size} bytes of header and voxels, its header needs {expected}; {fix}")
    if bad:
        raise ImageReadError(f"{path}: {bad} voxel(s) are NaN or infinite; repair or re-export the image")


def check_finite(image: sitk.Image, path: Path) -> None:
    """Refuse NaN or infinite voxels (they would become 0 or reach the cache as NaN statistics)."""
    if image.GetPixelID() not in (sitk.sitkFloat32, sitk.sitkFloat64):
        return
    bad = ~np.isfinite(sitk.GetArrayViewFromImage(image))
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise ImageReadError(f"{path}: {int(bad.sum())} voxel(s) are NaN or infinite (first at (z, y, x) {first}); "
                             "repair or re-export the image")


def read_image(path: Path, series_uid: str | None = None, modality: str | None = None) -> sitk.Image:
    """The image at `path`: a NIfTI/NRRD/MHA file, or the series in a DICOM folder (the one with `series_uid`,
    else the only series, of `modality` when given). DICOM values are modality values (HU for CT)."""
    path = Path(path)
    if path.is_dir():
        files = series_files(path, series_uid, modality)
        read_headers(files, path)
        image = read_series(files)
        check_finite(image, path)
        return image
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if not is_image_file(path):
        raise ImageReadError(
            f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)}); for DICOM give the folder of the series"
        )
    check_nifti(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageReadError(f"{path}: SimpleITK cannot read it: {str(error).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: expected a 3-D scalar image, got {image.GetDimension()}-D with "
                             f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    check_finite(image, path)
    return strip_metadata(image)


def to_lps(image: sitk.Image) -> sitk.Image:
    """The image with its axes permuted and flipped so that x, y, z run (as near as the direction allows) to the
    patient's left, posterior and head (LPS, DICOM's frame): a volume stored RAS and one stored LPS then give the
    same arrays, so patches of a cohort that mixes DICOM and NIfTI sources show the same anatomy."""
    return strip_metadata(sitk.DICOMOrient(image, "LPS"))


def read_pet_suv(path: Path, settings: SuvSettings, pet_nifti_is_suv: bool,
                 series_uid: str | None = None) -> tuple[sitk.Image, dict]:
    """PET as SUVbw (float32) and how it was obtained: DICOM is converted (`preprocess.suv`); an image file is
    taken as SUV only when the dataset config says so (`pet_nifti_is_suv`), since it has no PET headers."""
    path = Path(path)
    if path.is_dir():
        image, provenance = read_suv_series(path, settings, series_uid)
        check_finite(image, path)
        return image, {"suv_rule": list(provenance.rules), **provenance.as_dict()}
    if not pet_nifti_is_suv:
        raise ImageReadError(
            f"{path}: a PET image file has no DICOM headers to compute SUV from; point the manifest at the DICOM "
            "series folder, or set pet_nifti_is_suv = true in the dataset config if the file holds SUVbw"
        )
    image = sitk.Cast(read_image(path), sitk.sitkFloat32)
    return image, {"suv_rule": ["image file taken as SUVbw (dataset setting pet_nifti_is_suv)"], "input": str(path),
                   "fallbacks": []}
