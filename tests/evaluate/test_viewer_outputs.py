"""Viewer files read back: station names in the header, colour tables, maps on the original CT grid."""

import re

import numpy as np
import SimpleITK as sitk

from cache.display import station_colours
from cache.grid import Grid
from cache.stations import station, station_names
from evaluate.viewer_outputs import write_viewer_outputs
from preprocess.nifti_labels import read_label_extension


def scene(tmp_path):
    """A 1 x 1 x 1.5 mm CT and a 2 mm cropped cache grid inside it with station 7 at voxel (z, y, x) = (1, 1, 1)
    (centre (-4.5, 10.5, 103.5) mm, CT index (5.5, 5.5, 2.33)) and 4R at (0, 0, 0)."""
    ct = sitk.Image([20, 16, 12], sitk.sitkInt16)  # x, y, z
    ct.SetSpacing((1.0, 1.0, 1.5))
    ct.SetOrigin((-10.0, 5.0, 100.0))
    grid = Grid((3, 3, 3), (2.0, 2.0, 2.0), (-6.5, 8.5, 101.5))
    labels = np.zeros((3, 3, 3), dtype=np.uint8)
    labels[1, 1, 1], labels[0, 0, 0] = station("7").code, station("4R").code
    suv = np.full((3, 3, 3), 2.0, dtype=np.float32)
    probability, agreement = np.full(17, np.nan), np.full(17, np.nan)
    probability[station("7").index], agreement[station("7").index] = 0.83, 0.6
    probability[station("4R").index], agreement[station("4R").index] = 0.1, 0.9
    return write_viewer_outputs(tmp_path, ct, grid, labels, suv, probability, agreement), ct


def test_maps_land_on_the_original_ct_grid_with_the_station_values(tmp_path):
    files, ct = scene(tmp_path)
    images = {name: sitk.ReadImage(str(getattr(files, name))) for name in ("stations", "suv", "probability",
                                                                          "agreement")}
    for image in images.values():
        assert image.GetSize() == ct.GetSize() and image.GetOrigin() == ct.GetOrigin()
        assert image.GetSpacing() == ct.GetSpacing()
    labels = sitk.GetArrayFromImage(images["stations"])
    assert labels[2, 5:7, 5:7].min() == station("7").code
    assert set(np.unique(labels)) == {0, station("7").code, station("4R").code}
    probability = sitk.GetArrayFromImage(images["probability"])
    agreement = sitk.GetArrayFromImage(images["agreement"])
    assert np.allclose(probability[labels == station("7").code], 0.83)
    assert np.allclose(probability[labels == station("4R").code], 0.1)
    assert np.allclose(agreement[labels == station("7").code], 0.6)
    assert (probability[labels == 0] == 0).all() and (agreement[labels == 0] == 0).all()
    suv = sitk.GetArrayFromImage(images["suv"])
    assert np.allclose(suv[2, 5:7, 5:7], 2.0) and suv[0, 0, 0] == 0  # outside the cache's crop: 0


def test_station_names_are_in_the_header_and_both_colour_tables(tmp_path):
    files, _ = scene(tmp_path)
    names = {station(n).code: n for n in station_names()}
    assert read_label_extension(files.stations) == names
    descrip = sitk.ReadImage(str(files.stations)).GetMetaData("descrip")
    assert descrip.split()[2:] == [names[c] for c in sorted(names)]
    slicer = [line.split() for line in files.slicer_colours.read_text().splitlines() if not line.startswith("#")]
    assert {int(r[0]): r[1] for r in slicer[1:]} == names and slicer[0][1] == "background"
    itksnap = re.findall(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\S+\s+\d+\s+\d+\s+"([^"]+)"$',
                         files.itksnap_labels.read_text(), re.MULTILINE)
    assert {int(r[0]): r[4] for r in itksnap[1:]} == {c: f"station {n}" for c, n in names.items()}
    colours = station_colours()
    assert {int(r[0]): tuple(int(v) for v in r[1:4]) for r in itksnap[1:]} == {
        station(n).code: colours[n] for n in station_names()}
