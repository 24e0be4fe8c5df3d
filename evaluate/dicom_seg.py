"""The fused stations as a DICOM Segmentation (highdicom) referencing the source CT series, for PACS and viewers.

One segment per station of the catalogue (17, numbered by station code, labelled "station 4R", property type
SNOMED "Lymph node", colour as in cache.display), BINARY, on the CT's own frames: frame k of the label volume
belongs to the k-th CT slice along the slice normal (the order in which SimpleITK reads the series).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk

from cache.display import station_colours
from cache.stations import station
from cache.writer import package_version

TYPE2_COPIED = ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyID", "AccessionNumber",
                "ReferringPhysicianName", "StudyDate", "StudyTime")


class DicomSegError(ValueError):
    """A CT series the segmentation cannot be placed on; the message names the folder."""


def ct_series(folder: Path) -> list[pydicom.Dataset]:
    """The CT slices of `folder`, sorted along the slice normal (as SimpleITK stacks them)."""
    slices = [pydicom.dcmread(p) for p in sorted(folder.rglob("*")) if p.is_file() and pydicom.misc.is_dicom(p)]
    slices = [ds for ds in slices if getattr(ds, "Modality", "") == "CT" and "ImagePositionPatient" in ds]
    if not slices:
        raise DicomSegError(f"{folder}: no CT slices with ImagePositionPatient; a DICOM SEG needs the CT series")
    if len({ds.SeriesInstanceUID for ds in slices}) > 1:
        raise DicomSegError(f"{folder}: holds several CT series; pass a folder with one")
    row, column = np.asarray(slices[0].ImageOrientationPatient[:3], float), np.asarray(
        slices[0].ImageOrientationPatient[3:], float)
    normal = np.cross(row, column)
    for ds in slices:  # type 2 attributes the SEG copies from its source: present, if empty, in a valid series
        for keyword in TYPE2_COPIED:
            if keyword not in ds:
                setattr(ds, keyword, "")
    return sorted(slices, key=lambda ds: float(np.dot(normal, np.asarray(ds.ImagePositionPatient, float))))


def write_station_seg(labels_on_ct: sitk.Image, ct_folder: Path, path: Path) -> Path:
    """Write the station codes (a label image on the grid of the CT series in `ct_folder`) as DICOM SEG."""
    import highdicom as hd
    from pydicom.sr.codedict import codes


    source = ct_series(Path(ct_folder))
    labels = sitk.GetArrayFromImage(labels_on_ct)
    if labels.shape != (len(source), int(source[0].Rows), int(source[0].Columns)):
        raise DicomSegError(f"{ct_folder}: {len(source)} slices of {source[0].Rows}x{source[0].Columns}, but the "
                            f"station labels are {labels.shape} (z, y, x): they must lie on this series' grid")
    algorithm = hd.AlgorithmIdentificationSequence(name="lnstage", version=package_version(),
                                                   family=codes.cid7162.ArtificialIntelligence)
    descriptions = [
        hd.seg.SegmentDescription(
            segment_number=station(name).code, segment_label=f"station {name}",
            segmented_property_category=codes.SCT.Tissue, segmented_property_type=codes.SCT.LymphNode,
            algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC, algorithm_identification=algorithm,
            display_color=hd.color.CIELabColor.from_rgb(*rgb))
        for name, rgb in sorted(station_colours().items(), key=lambda item: station(item[0]).code)]
    seg = hd.seg.Segmentation(
        source_images=source, pixel_array=labels.astype(np.uint8),
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descriptions,
        series_instance_uid=hd.UID(), series_number=900, sop_instance_uid=hd.UID(), instance_number=1,
        manufacturer="lnstage", manufacturer_model_name="lnstage", software_versions=package_version(),
        device_serial_number="none", series_description="lymph node stations (lnstage)")
    seg.save_as(path)
    return Path(path)

