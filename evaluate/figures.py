"""Figures of the report: confusion matrices as in the paper's Fig. 9, and per-scan QA overlays of the fused
stations on CT and PET with each station's predicted status. Matplotlib `Figure` objects rendered by Agg on
save, so no pyplot state or global backend is touched."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from cache.stations import station_names

MALIGNANT_COLOUR, BENIGN_COLOUR = "#d62728", "#2ca02c"
CT_WINDOW_HU = (-200.0, 400.0)
SUV_WINDOW = (0.0, 6.0)


def _matrix_panel(ax, matrix: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Counts in each cell, coloured by the share of the true class (row)."""
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", color="white" if shares[i, j] > 0.6 else "black",
                fontsize=9)
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)


def confusion_figure(names: Sequence[str], station: Sequence[np.ndarray], n_stage: Sequence[np.ndarray],
                     path: Path, dpi: int = 90) -> Path:
    """One column per method: the pooled station (2x2) and N-stage (4x4) confusion matrices."""
    fig = Figure(figsize=(2.6 * len(names), 6.0))
    axes = fig.subplots(2, len(names), squeeze=False)
    for k, name in enumerate(names):
        title = textwrap.fill(name, 26)
        _matrix_panel(axes[0, k], station[k], ["benign", "malig."], f"{title}\nstations")
        _matrix_panel(axes[1, k], n_stage[k], ["N0", "N1", "N2", "N3"], f"{title}\nN-stage")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _qa_slices(station_labels: np.ndarray, n_slices: int) -> list[int]:
    """Axial slices (z) spread over the station-bearing range, each holding many station voxels."""
    per_slice = np.count_nonzero(station_labels.reshape(station_labels.shape[0], -1), axis=1)
    bearing = np.flatnonzero(per_slice)
    if bearing.size == 0:
        return [station_labels.shape[0] // 2]
    chunks = np.array_split(bearing, min(n_slices, bearing.size))
    return [int(chunk[np.argmax(per_slice[chunk])]) for chunk in chunks]


def qa_overlay_figure(ct_hu: np.ndarray, suv: np.ndarray, station_labels: np.ndarray, status: np.ndarray,
                      title: str, path: Path, probability: np.ndarray | None = None, n_slices: int = 3,
                      dpi: int = 80) -> Path:
    """Axial CT and PET slices (z, y, x arrays) with the fused station contours: red malignant, green benign.

    `status` is int8[17] (predicted); `probability` adds each station's value to its legend line.
    """
    slices = _qa_slices(station_labels, n_slices)
    fig = Figure(figsize=(3.0 * len(slices), 6.2))
    axes = fig.subplots(2, len(slices), squeeze=False)
    for k, z in enumerate(slices):
        for row, (image, window, cmap) in enumerate(((ct_hu, CT_WINDOW_HU, "gray"), (suv, SUV_WINDOW, "gray_r"))):
            ax = axes[row, k]
            ax.imshow(image[z], cmap=cmap, vmin=window[0], vmax=window[1])
            _contours_axial(ax, station_labels[z], status)
            ax.set_axis_off()
            ax.set_title(f"{'CT' if row == 0 else 'PET (SUV)'} z={z}", fontsize=8)
    positive = [n for n, s in zip(station_names(), status, strict=True) if s == 1]
    subtitle = "malignant: " + (", ".join(positive) if positive else "none")
    if probability is not None and positive:
        subtitle = "malignant: " + ", ".join(
            f"{n} ({p:.2f})" for n, p, s in zip(station_names(), probability, status, strict=True) if s == 1)
    fig.suptitle(f"{title}\n{subtitle}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _contours_axial(ax, labels_2d: np.ndarray, status: np.ndarray) -> None:
    names = station_names()
    for code in np.unique(labels_2d[labels_2d > 0]):
        mask = labels_2d == code
        colour = MALIGNANT_COLOUR if status[code - 1] == 1 else BENIGN_COLOUR
        ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=0.8)
        y, x = np.argwhere(mask).mean(axis=0)
        ax.text(x, y, names[code - 1], color=colour, fontsize=6, ha="center", va="center")
