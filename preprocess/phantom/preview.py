"""PNG mid-slices of a simulated scan (axial and coronal: CT, PET, stations, nodes) for a person to judge, and one
picture of a patient of each benign-uptake state side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cache.stations import station
from preprocess.phantom.pet import pet_on_ct_grid
from preprocess.phantom.scan import SimulatedScan


def _slice_index(scan: SimulatedScan) -> np.ndarray:
    """(z, y, x) voxel through the subcarinal station (station 7), the classic reading level."""
    where = np.argwhere(scan.stations == station("7").code)
    return where.mean(axis=0).round().astype(int) if len(where) else np.asarray(scan.grid.shape_zyx) // 2


def write_preview(scan: SimulatedScan, path: Path, title: str = "", dpi: int = 70) -> None:
    """Axial (top) and coronal (bottom) slices: CT, PET (SUV 0-6), station labels, nodes on CT."""
    z, y, _ = _slice_index(scan)
    suv = _pet_on_ct(scan) if scan.suv is not None else np.zeros(scan.grid.shape_zyx, np.float32)
    views = [("axial", lambda v: v[z], "upper"), ("coronal", lambda v: v[:, y], "lower")]
    fig = Figure(figsize=(16, 7.5))  # no pyplot: no global backend or figure registry to set or clean up
    axes = fig.subplots(2, 4)
    spacing = scan.grid.spacing_mm[0]
    for row, (name, cut, origin) in enumerate(views):
        ct = cut(scan.ct_hu)
        axes[row, 0].imshow(ct, cmap="gray", vmin=-400, vmax=400, origin=origin)
        axes[row, 1].imshow(cut(suv), cmap="hot", vmin=0, vmax=6, origin=origin)
        axes[row, 2].imshow(ct, cmap="gray", vmin=-400, vmax=400, origin=origin)
        labels = np.ma.masked_equal(cut(scan.stations), 0)
        axes[row, 2].imshow(labels, cmap="tab20", vmin=1, vmax=20, alpha=0.6, origin=origin, interpolation="nearest")
        axes[row, 3].imshow(ct, cmap="gray", vmin=-200, vmax=300, origin=origin)
        for node in scan.nodes:
            index = scan.grid.physical_to_index(node.blob.centre_mm)
            depth = index[0] - z if name == "axial" else index[1] - y
            if abs(depth) * spacing <= node.short_axis_mm:
                u, v = (index[2], index[1]) if name == "axial" else (index[2], index[0])
                colour = "red" if node.malignant else "lime"
                axes[row, 3].plot(u, v, "o", mfc="none", mec=colour, ms=max(4.0, node.short_axis_mm / spacing * 2))
                axes[row, 3].text(u + 3, v, node.station, color=colour, fontsize=7)
        for col, label in enumerate(("CT", "PET (SUV 0-6)", "stations", "nodes (red malignant)")):
            axes[row, col].set_title(f"{name}: {label}", fontsize=9)
            axes[row, col].axis("off")
    if scan.labels is not None:
        positive = ", ".join(scan.labels.positive) or "none"
        title = f"{title}  N{scan.labels.n_stage}, tumour side {scan.labels.tumor_side}, positive: {positive}"
    fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)


def _pet_on_ct(scan: SimulatedScan) -> np.ndarray:
    factor = round(scan.pet_grid.spacing_mm[0] / scan.grid.spacing_mm[0])
    return pet_on_ct_grid(scan.suv, factor, scan.grid.shape_zyx)


def write_state_preview(scans: list[tuple[str, SimulatedScan]], path: Path, dpi: int = 70) -> None:
    """One row per (name, patient), coronal views through station 7: CT with its nodes (red malignant, yellow hot
    benign, green benign), the true stations, the PET slice, and the PET's maximum along y over the true station
    masks (what SUVmax thresholding sees), where every hot node of the patient shows."""
    fig = Figure(figsize=(16, 4.2 * len(scans)))
    axes = fig.subplots(len(scans), 4, squeeze=False)
    for row, (name, scan) in enumerate(scans):
        _, y, _ = _slice_index(scan)
        suv = _pet_on_ct(scan)
        seen = np.where(scan.stations > 0, suv, 0.0).max(axis=1)
        axes[row, 0].imshow(scan.ct_hu[:, y], cmap="gray", vmin=-200, vmax=300, origin="lower")
        for node in scan.nodes:
            index = scan.grid.physical_to_index(node.blob.centre_mm)
            if abs(index[1] - y) * scan.grid.spacing_mm[1] <= node.short_axis_mm:
                colour = "red" if node.malignant else "yellow" if node.reactive else "lime"
                size = max(4.0, node.short_axis_mm / scan.grid.spacing_mm[0] * 2)
                axes[row, 0].plot(index[2], index[0], "o", mfc="none", mec=colour, ms=size)
        axes[row, 1].imshow(scan.ct_hu[:, y], cmap="gray", vmin=-400, vmax=400, origin="lower")
        axes[row, 1].imshow(np.ma.masked_equal(scan.stations[:, y], 0), cmap="tab20", vmin=1, vmax=20, alpha=0.6,
                            origin="lower", interpolation="nearest")
        axes[row, 2].imshow(suv[:, y], cmap="hot", vmin=0, vmax=6, origin="lower")
        axes[row, 3].imshow(seen, cmap="hot", vmin=0, vmax=6, origin="lower")
        uptake = scan.benign_uptake
        hot = ", ".join(sorted(uptake.hot_stations, key=lambda s: station(s).code)) or "none"
        positive = ", ".join(scan.labels.positive) or "none"
        axes[row, 0].set_title(f"{name}: benign uptake {uptake.state}\nN{scan.labels.n_stage}, positive: {positive}",
                               fontsize=9)
        axes[row, 1].set_title("true stations", fontsize=9)
        axes[row, 2].set_title("PET (SUV 0-6)", fontsize=9)
        axes[row, 3].set_title(f"PET maximum over the stations\nhot benign: {hot}", fontsize=9)
        for ax in axes[row]:
            ax.axis("off")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
