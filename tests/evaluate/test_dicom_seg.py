"""The station DICOM SEG on a real DICOM CT series (written by the phantom's writer), read back by pydicom."""

import datetime as dt

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import generate_uid

from cache.grid import Grid
from cache.stations import station, station_names
from evaluate.dicom_seg import DicomSegError, write_station_seg
from preprocess.images import read_image
from preprocess.phantom.dicom_ct import write_ct_series


def ct_folder(tmp_path):
    grid = Grid((6, 10, 12), (1.5, 1.5, 3.0), (-9.0, -7.5, 40.0))
    hu = np.full(grid.shape_zyx, -800, dtype=np.int16)
    folder = tmp_path / "ct"
    write_ct_series(folder, hu, grid, "P1", dt.datetime(2026, 1, 2, 10, 0), "seed",
                    generate_uid(entropy_srcs=["study"]), generate_uid(entropy_srcs=["frame"]))
    return folder


def test_seg_has_17_segments_on_the_source_geometry(tmp_path):
    folder = ct_folder(tmp_path)
    ct = read_image(folder, modality="CT")
    labels = np.zeros(sitk.GetArrayFromImage(ct).shape, dtype=np.uint8)
    labels[1:3, 2:5, 3:6] = station("4R").code
    labels[4, 6:8, 6:9] = station("7").code
    image = sitk.GetImageFromArray(labels)
    image.CopyInformation(ct)
    seg = pydicom.dcmread(write_station_seg(image, folder, tmp_path / "stations.seg.dcm"))
    assert seg.Modality == "SEG" and len(seg.SegmentSequence) == 17
    assert [s.SegmentLabel for s in seg.SegmentSequence] == [f"station {n}" for n in
                                                          sorted(station_names(), key=lambda n: station(n).code)]
    source = [pydicom.dcmread(p) for p in sorted(folder.iterdir())]
    assert seg.FrameOfReferenceUID == source[0].FrameOfReferenceUID
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source[0].SeriesInstanceUID
    # each frame: one segment on one source slice; rebuild the label volume from the frames and compare
    z_of = {float(ds.ImagePositionPatient[2]): k for k, ds in enumerate(sorted(
        source, key=lambda ds: float(ds.ImagePositionPatient[2])))}
    rebuilt = np.zeros_like(labels)
    for frame, item in zip(seg.pixel_array.reshape(-1, *labels.shape[1:]), seg.PerFrameFunctionalGroupsSequence,
                           strict=True):
        number = item.SegmentIdentificationSequence[0].ReferencedSegmentNumber
        z = z_of[float(item.PlanePositionSequence[0].ImagePositionPatient[2])]
        rebuilt[z][frame > 0] = number
    assert np.array_equal(rebuilt, labels)


def test_labels_off_the_series_grid_are_refused(tmp_path):
    folder = ct_folder(tmp_path)
    with pytest.raises(DicomSegError, match="must lie on this series' grid"):
        write_station_seg(sitk.Image([4, 4, 4], sitk.sitkUInt8), folder, tmp_path / "s.dcm")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DicomSegError, match="no CT slices"):
        write_station_seg(sitk.Image([4, 4, 4], sitk.sitkUInt8), tmp_path / "empty", tmp_path / "s.dcm")
