import numpy as np
import pytest
import SimpleITK as sitk

from cache.stations import station
from preprocess.register.import_lynch import AtlasImportError, import_lynch_atlases, station_code_table

from .conftest import toy_scan, write_image

TABLE = '[labels]\n"4R" = 1\n"7L" = 2\n"7R" = 3\n"11Rs" = 4\n"11Ri" = 5\n"3AL" = 6\n"3AR" = 7\n"other" = 9\n'


def test_sub_labels_merge_into_their_parent_station(tmp_path):
    scan = toy_scan()
    source = tmp_path / "lynch" / "case1"
    labels = np.zeros(scan.structures.shape, dtype=np.uint8)
    for code, (z, y, x) in zip(range(1, 8), [(5, 5, 5), (6, 6, 6), (7, 7, 7), (8, 8, 8), (9, 9, 9), (10, 10, 10),
                                             (11, 11, 11)], strict=True):
        labels[z, y, x] = code
    labels[12, 12, 12] = 9
    write_image(scan.ct_hu, scan.grid, source / "ct.nii.gz")
    write_image(scan.structures, scan.grid, source / "totalseg.nii.gz")
    write_image(labels, scan.grid, source / "labels.nii.gz")
    (source / "labels.toml").write_text('origin = "test"\nignore = ["other"]\n' + TABLE)
    [out] = import_lynch_atlases(tmp_path / "lynch", tmp_path / "bank", "v2")
    stations = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "stations.nii.gz")))
    assert stations[5, 5, 5] == station("4R").code
    assert stations[6, 6, 6] == stations[7, 7, 7] == station("7").code
    assert stations[8, 8, 8] == stations[9, 9, 9] == station("11R").code
    assert stations[10, 10, 10] == stations[11, 11, 11] == station("3A").code
    assert stations[12, 12, 12] == 0
    assert (out / "atlas.toml").read_text().count('origin = "test"') == 1
    assert (out / "totalseg.nii.gz").is_file() and (out / "ct.nii.gz").is_file()


def test_unknown_label_names_and_codes_are_refused(tmp_path):
    with pytest.raises(AtlasImportError, match="'12X': neither a station"):
        station_code_table({"12X": 3}, [], "labels.toml")
    scan = toy_scan()
    source = tmp_path / "lynch" / "case1"
    labels = np.zeros(scan.structures.shape, dtype=np.uint8)
    labels[3, 3, 3] = 42
    write_image(scan.ct_hu, scan.grid, source / "ct.nii.gz")
    write_image(scan.structures, scan.grid, source / "totalseg.nii.gz")
    write_image(labels, scan.grid, source / "labels.nii.gz")
    (source / "labels.toml").write_text('ignore = ["other"]\n' + TABLE)
    with pytest.raises(AtlasImportError, match=r"label code\(s\) \[42\] are not in the labels.toml table"):
        import_lynch_atlases(tmp_path / "lynch", tmp_path / "bank", "v2")
