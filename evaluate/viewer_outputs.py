"""Files a radiologist opens over the original CT in 3D Slicer or ITK-SNAP, all on the CT's own grid.

- `stations.nii.gz`: uint8 station codes (0 background), the names in a label-table header extension (the
  CaretExtension TotalSegmentator writes, `preprocess.nifti_labels`) and the NIfTI `descrip` field;
- `stations.ctbl`: the 3D Slicer colour table (`code name R G B A` per line; load it with the label map, or
  choose it as the label map's colour node);
- `stations.itksnap.txt`: the ITK-SNAP label description file (Segmentation > Import Label Descriptions);
- `suv.nii.gz`: float32 SUV of the cache (the preprocessed crop, linear; 0 outside the crop);
- `probability.nii.gz`: float32 malignancy probability of each voxel's station (0 outside stations and in stations
  the fused mask lacks);
- `agreement.nii.gz`: float32 atlas agreement of each voxel's station: the station's mean fraction of atlases
  voting for it (the cache keeps the mean per station, not the votes per voxel).

Station colours are `cache.display.station_colours` (each left/right pair gets two unrelated hues), the same as
in the QA pictures.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.display import station_colours
from cache.grid import Grid
from cache.stations import station, station_names

ITKSNAP_HEADER = ("################################################\n"
                  "# ITK-SnAP Label Description File\n"
                  "# Columns = IDX -R- -G- -B- -A-- VIS MSH  LABEL\n"
                  "################################################\n")


@dataclass(frozen=True)
class ViewerFiles:
    """Paths of the files written by `write_viewer_outputs`."""

    stations: Path
    slicer_colours: Path
    itksnap_labels: Path
    suv: Path
    probability: Path
    agreement: Path


def write_slicer_colour_table(path: Path) -> Path:
    """The 3D Slicer colour table of the station codes (background transparent)."""
    lines = ["# lnstage lymph node stations: code name R G B A", "0 background 0 0 0 0"]
    lines += [f"{station(name).code} {name} {r} {g} {b} 255" for name, (r, g, b) in station_colours().items()]
    Path(path).write_text("\n".join(lines) + "\n")
    return Path(path)


def write_itksnap_labels(path: Path) -> Path:
    """The ITK-SNAP label description file of the station codes."""
    lines = [f'{0:5d} {0:5d} {0:4d} {0:4d} {0:8.2f} {0:2d} {0:2d}    "Clear Label"']
    lines += [f'{station(name).code:5d} {r:5d} {g:4d} {b:4d} {1:8.2f} {1:2d} {1:2d}    "station {name}"'
              for name, (r, g, b) in station_colours().items()]
    Path(path).write_text(ITKSNAP_HEADER + "\n".join(lines) + "\n")
    return Path(path)


def on_ct_grid(volume_zyx: np.ndarray, grid: Grid, ct: sitk.Image, interpolator: str) -> sitk.Image:
    """A cache volume (z, y, x) on `grid`, resampled onto the CT image's grid (0 outside the cache's crop)."""
    from preprocess.resample import resample_like

    image = sitk.GetImageFromArray(np.ascontiguousarray(volume_zyx))
    grid.apply_to_sitk(image)
    return resample_like(image, ct, interpolator, 0)


def station_values_image(labels: sitk.Image, values_by_code: np.ndarray) -> sitk.Image:
    """float32 image of `values_by_code[code]` at each voxel of the station label image (code 0 -> 0)."""
    image = sitk.GetImageFromArray(values_by_code.astype(np.float32)[sitk.GetArrayViewFromImage(labels)])
    image.CopyInformation(labels)
    return image


def write_viewer_outputs(out: Path, ct: sitk.Image, grid: Grid, labels_zyx: np.ndarray, suv_zyx: np.ndarray,
                         probability: np.ndarray, agreement: np.ndarray) -> ViewerFiles:
    """Every viewer file of one scan in `out`, on the grid of `ct` (the original CT image).

    `labels_zyx`, `suv_zyx`: the cache's station codes and SUV on `grid`; `probability`, `agreement`: per station
    in catalogue order (17,), NaN for a station the fused mask lacks.
    """
    from preprocess.nifti_labels import write_with_label_extension

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = ViewerFiles(out / "stations.nii.gz", out / "stations.ctbl", out / "stations.itksnap.txt",
                        out / "suv.nii.gz", out / "probability.nii.gz", out / "agreement.nii.gz")
    labels = on_ct_grid(labels_zyx.astype(np.uint8), grid, ct, "nearest")
    names = {station(name).code: name for name in station_names()}
    labels.SetMetaData("ITK_FileNotes", "lnstage stations "  # ITK writes it as the NIfTI descrip
                        + " ".join(names[c] for c in sorted(names)))
    write_with_label_extension(labels, files.stations, names)
    write_slicer_colour_table(files.slicer_colours)
    write_itksnap_labels(files.itksnap_labels)
    sitk.WriteImage(on_ct_grid(suv_zyx.astype(np.float32), grid, ct, "linear"), str(files.suv), useCompression=True)
    for values, path in ((probability, files.probability), (agreement, files.agreement)):
        by_code = np.zeros(256, dtype=np.float32)
        by_code[[station(name).code for name in station_names()]] = np.nan_to_num(np.asarray(values, np.float32))
        sitk.WriteImage(station_values_image(labels, by_code), str(path), useCompression=True)
    return files
