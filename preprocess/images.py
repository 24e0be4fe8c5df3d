"""Reading CT and PET: a DICOM series folder or a NIfTI/NRRD/MHA file, geometry (origin, spacing, direction)
kept exactly as SimpleITK reads it, and no metadata carried along (no DICOM tag can reach a written file)."""

from __future__ import annotations

from pathlib import Path

import SimpleITK as sitk

from preprocess.dicom_series import read_series, series_files, strip_metadata
from preprocess.suv import SuvSettings, read_suv_series

IMAGE_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd")


class ImageReadError(ValueError):
    """A path that is neither a readable image file nor a DICOM series folder."""


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(IMAGE_SUFFIXES)


def read_image(path: Path, series_uid: str | None = None, modality: str | None = None) -> sitk.Image:
    """The image at `path`: a NIfTI/NRRD/MHA file, or the series in a DICOM folder (the one with `series_uid`,
    else the only series, of `modality` when given). DICOM values are modality values (HU for CT)."""
    path = Path(path)
    if path.is_dir():
        return read_series(series_files(path, series_uid, modality))
    if not path.exists():
        raise ImageReadError(f"{path}: no such file or folder")
    if not is_image_file(path):
        raise ImageReadError(
            f"{path}: not an image file ({', '.join(IMAGE_SUFFIXES)}); for DICOM give the folder of the series"
        )
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageReadError(f"{path}: SimpleITK cannot read it: {str(error).strip().splitlines()[-1]}") from None
    if image.GetDimension() != 3 or image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"{path}: expected a 3-D scalar image, got {image.GetDimension()}-D with "
                             f"{image.GetNumberOfComponentsPerPixel()} component(s)")
    return strip_metadata(image)


def read_pet_suv(path: Path, settings: SuvSettings, pet_nifti_is_suv: bool,
                 series_uid: str | None = None) -> tuple[sitk.Image, dict]:
    """PET as SUVbw (float32) and how it was obtained: DICOM is converted (`preprocess.suv`); an image file is
    taken as SUV only when the dataset config says so (`pet_nifti_is_suv`), since it has no PET headers."""
    path = Path(path)
    if path.is_dir():
        image, provenance = read_suv_series(path, settings, series_uid)
        return image, {"suv_rule": list(provenance.rules), **provenance.as_dict()}
    if not pet_nifti_is_suv:
        raise ImageReadError(
            f"{path}: a PET image file has no DICOM headers to compute SUV from; point the manifest at the DICOM "
            "series folder, or set pet_nifti_is_suv = true in the dataset config if the file holds SUVbw"
        )
    image = sitk.Cast(read_image(path), sitk.sitkFloat32)
    return image, {"suv_rule": ["image file taken as SUVbw (dataset setting pet_nifti_is_suv)"], "input": str(path),
                   "fallbacks": []}
