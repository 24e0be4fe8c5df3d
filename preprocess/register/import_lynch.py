"""Import atlases drawn in the Lynch et al. sub-label scheme into the atlas bank format.

Bank format: docs/architecture.md#the-atlas-bank.

Source layout (one sub-folder per atlas):

    SOURCE/<atlas>/ct.nii.gz          the atlas CT (or any image SimpleITK reads, or a DICOM folder `ct/`)
    SOURCE/<atlas>/labels.nii.gz      station labels on the CT grid, with the atlas' own label codes
    SOURCE/<atlas>/labels.toml        the name -> code table of labels.nii.gz (else SOURCE/labels.toml, shared)
    SOURCE/<atlas>/totalseg.nii.gz    TotalSegmentator masks (file or folder `totalseg/`); made by the
                                      `TotalSegmentator` command when missing and installed

labels.toml:

    origin = "Lynch et al., ..."      # optional, copied to atlas.toml
    licence = "CC BY 4.0"             # optional, copied to atlas.toml
    ignore = ["other"]                # optional: label names to drop (become background)
    [labels]
    "1L" = 1
    "3AL" = 5                         # sub-labels (3AL/3AR, 3PL/3PR, 7L/7R, 8L/8R, 9L/9R, 11Rs/11Ri) merge
    "11Rs" = 21                       # into their parent station (configs/stations.toml [sub_labels])

Every name must be a station of the catalogue, a known sub-label or listed in `ignore`; every code found in
labels.nii.gz must be in the table. Anything else is an error naming the file and the label: a silently dropped
station would bias every scan registered to this atlas.

    python -m preprocess.register.import_lynch SOURCE OUT [--totalseg-version auto|v1|v2]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.settings import SettingsError, read_toml
from cache.stations import station, station_names, sub_label_parents
from preprocess.images import ImageReadError, read_image
from preprocess.totalseg import TotalSegError, load_totalseg


class AtlasImportError(ValueError):
    """A source atlas whose labels cannot be mapped to the station catalogue."""


def station_code_table(names_to_codes: dict[str, int], ignore: Sequence[str], where: str) -> dict[int, int]:
    """Source label code -> catalogue station code (sub-labels merged into their parent; ignored names -> 0)."""
    parents = sub_label_parents()
    table = {}
    for name, code in names_to_codes.items():
        if isinstance(code, bool) or not isinstance(code, int) or code <= 0:
            raise AtlasImportError(f"{where}, [labels] {name!r}: code must be a positive integer, got {code!r}")
        if name in ignore:
            table[code] = 0
        elif name in parents:
            table[code] = station(parents[name]).code
        elif name in station_names():
            table[code] = station(name).code
        else:
            raise AtlasImportError(
                f"{where}, [labels] {name!r}: neither a station ({', '.join(station_names())}) nor a sub-label "
                f"({', '.join(parents)}); add it to `ignore` if it is not a lymph node station"
            )
    return table


def merged_stations(labels: np.ndarray, table: dict[int, int], where: str) -> np.ndarray:
    """uint8 station codes of a source label array through `table` (0 stays background)."""
    present = np.unique(labels)
    unknown = [int(c) for c in present if c != 0 and int(c) not in table]
    if unknown:
        raise AtlasImportError(f"{where}: label code(s) {unknown} are not in the labels.toml table")
    lut = np.zeros(int(present.max(initial=0)) + 1, dtype=np.uint8)
    for code, target in table.items():
        if code < len(lut):
            lut[code] = target
    return lut[labels]


def _label_table(folder: Path) -> tuple[Path, dict]:
    for path in (folder / "labels.toml", folder.parent / "labels.toml"):
        if path.is_file():
            data = read_toml(path)
            if not isinstance(data.get("labels"), dict) or not data["labels"]:
                raise AtlasImportError(f"{path}: needs a [labels] table of name = code")
            return path, data
    raise AtlasImportError(f"atlas {folder}: no labels.toml (name -> code table) in it or in {folder.parent}")


def import_atlas(folder: Path, out: Path, totalseg_version: str = "auto") -> Path:
    """Write one source atlas as a bank atlas folder `out/<name>`; returns that folder."""
    table_path, data = _label_table(folder)
    table = station_code_table(data["labels"], data.get("ignore", []), str(table_path))
    ct_path = folder / "ct" if (folder / "ct").is_dir() else folder / "ct.nii.gz"
    ct = read_image(ct_path)
    label_image = read_image(folder / "labels.nii.gz")
    if label_image.GetSize() != ct.GetSize():
        raise AtlasImportError(f"{folder / 'labels.nii.gz'}: size {label_image.GetSize()} differs from the CT's "
                               f"{ct.GetSize()}; labels must be drawn on the CT grid")
    stations = merged_stations(sitk.GetArrayFromImage(label_image).astype(np.int64), table,
                               str(folder / "labels.nii.gz"))
    existing = next((p for p in (folder / "totalseg.nii.gz", folder / "totalseg") if p.exists()), None)
    masks = load_totalseg(existing, ct, totalseg_version, ct_path=ct_path)
    target = out / folder.name
    target.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(ct, str(target / "ct.nii.gz"))
    sitk.WriteImage(masks.image, str(target / "totalseg.nii.gz"))
    station_image = sitk.GetImageFromArray(stations)
    station_image.CopyInformation(ct)
    sitk.WriteImage(station_image, str(target / "stations.nii.gz"))
    origin = str(data.get("origin", "Lynch et al. style atlas")).replace('"', "'")
    licence = str(data.get("licence", "see the source")).replace('"', "'")
    (target / "atlas.toml").write_text(
        f'name = "{folder.name}"\norigin = "{origin}"\nlicence = "{licence}"\n'
        'label_scheme = "station codes 1-17 of configs/stations.toml; Lynch sub-labels merged into parents"\n'
        'totalseg_version = "v2"\n', encoding="utf-8")
    return target


def import_lynch_atlases(source: Path, out: Path, totalseg_version: str = "auto") -> list[Path]:
    """Import every atlas sub-folder (with labels.nii.gz) of `source` into the bank folder `out`."""
    folders = sorted(p for p in Path(source).iterdir() if p.is_dir() and (p / "labels.nii.gz").is_file())
    if not folders:
        raise AtlasImportError(f"{source}: no atlas sub-folder with labels.nii.gz")
    return [import_atlas(folder, Path(out), totalseg_version) for folder in folders]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m preprocess.register.import_lynch",
                                     description="Import Lynch et al.-style atlases into an atlas bank folder.")
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--totalseg-version", choices=("auto", "v1", "v2"), default="auto")
    args = parser.parse_args(argv)
    try:
        for path in import_lynch_atlases(args.source, args.out, args.totalseg_version):
            print(f"imported {path}")
    except (AtlasImportError, SettingsError, ImageReadError, TotalSegError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
