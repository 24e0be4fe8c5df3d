"""Writing a simulated scan in the real input formats: NIfTI images, a PET DICOM series, truth tables, atlases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cache.grid import Grid
from preprocess.nifti_labels import write_with_label_extension
from preprocess.phantom.dicom_pet import write_pet_series
from preprocess.phantom.scan import SimulatedScan
from preprocess.totalseg_labels import label_map

NODE_COLUMNS = ("node_id", "station", "malignant", "x_mm", "y_mm", "z_mm", "short_axis_mm", "suv_max",
                "long_axis_mm", "fatty_hilum", "necrotic")


def write_image(array: np.ndarray, grid: Grid, path: Path) -> None:
    """Write a (z, y, x) array with the grid's physical geometry (compressed NIfTI)."""
    image = sitk.GetImageFromArray(array)
    grid.apply_to_sitk(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True, compressionLevel=1)


def write_totalseg(array: np.ndarray, grid: Grid, path: Path) -> None:
    """TotalSegmentator-style multilabel NIfTI (v2 ids) with the v2 label table in its header, as v2 writes it."""
    image = sitk.GetImageFromArray(array)
    grid.apply_to_sitk(image)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_with_label_extension(image, path, label_map("v2"))


def write_nodes_csv(scan: SimulatedScan, path: Path) -> None:
    """Truth node table; centres are physical LPS mm (as SimpleITK's TransformIndexToPhysicalPoint)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    suv_max = scan.node_suv_max or (float("nan"),) * len(scan.nodes)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(NODE_COLUMNS)
        for node, peak in zip(scan.nodes, suv_max, strict=True):
            x, y, z = node.blob.centre_mm
            writer.writerow([node.node_id, node.station, int(node.malignant), f"{x:.2f}", f"{y:.2f}", f"{z:.2f}",
                             f"{node.short_axis_mm:.2f}", f"{peak:.3f}", f"{node.long_axis_mm:.2f}",
                             int(node.fatty_hilum), int(node.necrotic)])


def write_patient_scan(root: Path, patient_id: str, scan_id: str, scan: SimulatedScan,
                       list_stations: bool) -> dict[str, str]:
    """Write one patient's files and truth; return its manifest row (paths relative to `root`)."""
    folder = Path("scans") / scan_id
    write_image(scan.ct_hu, scan.grid, root / folder / "ct.nii.gz")
    write_totalseg(scan.totalseg, scan.grid, root / folder / "totalseg.nii.gz")
    write_image(scan.lesions, scan.grid, root / folder / "lesions.nii.gz")
    if scan.pet_dicom is not None:
        pet = folder / "pet_dicom"
        write_pet_series(root / pet, *scan.pet_dicom, scan.pet_grid, scan.acquisition, patient_id, scan_id)
    else:
        pet = folder / "pet.nii.gz"
        write_image(scan.suv, scan.pet_grid, root / pet)
    truth = root / "truth" / scan_id
    write_image(scan.stations, scan.grid, truth / "stations.nii.gz")
    write_nodes_csv(scan, truth / "nodes.csv")
    labels = scan.labels
    stations_text = ";".join(labels.positive) if list_stations else ""
    return {
        "patient_id": patient_id, "scan_id": scan_id, "ct": str(folder / "ct.nii.gz"), "pet": str(pet),
        "totalseg": str(folder / "totalseg.nii.gz"), "lesions": str(folder / "lesions.nii.gz"),
        "tumor_side": labels.tumor_side, "n_clinical": str(labels.n_stage), "n_pathological": str(labels.n_stage),
        "stations_clinical": stations_text, "stations_pathological": stations_text, "split_group": "",
    }


def write_atlas(folder: Path, scan: SimulatedScan, delineation: np.ndarray, name: str, seed: int) -> None:
    """One atlas of the bank: CT, TotalSegmentator masks, the rater's station labels and atlas.toml."""
    write_image(scan.ct_hu, scan.grid, folder / "ct.nii.gz")
    write_totalseg(scan.totalseg, scan.grid, folder / "totalseg.nii.gz")
    write_image(delineation, scan.grid, folder / "stations.nii.gz")
    (folder / "atlas.toml").write_text(
        f'name = "{name}"\n'
        f'origin = "synthetic thorax phantom (python -m preprocess.phantom, seed {seed})"\n'
        'licence = "CC0-1.0 (synthetic, no patient data)"\n'
        'label_scheme = "station codes 1-17 of configs/stations.toml"\n'
        'totalseg_version = "v2"\n',
        encoding="utf-8",
    )
