"""Figures of the report and of predict: confusion matrices as in the paper's Fig. 9, and per-scan QA overlays of
the fused stations on CT and PET with each station's predicted status.

Matplotlib `Figure` objects rendered by Agg on save: no pyplot state or global backend is touched, so a notebook's
inline plots keep working. Pictures are written at 150 dpi with no text under 9 pt. Malignant and benign differ in
colour and line style (Okabe-Ito vermilion solid vs blue dashed: told apart with any colour vision and in grey).
Slices are oriented radiologically with their patient letters and positions in mm (`cache.display`).
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from cache.display import SliceView, View, orientation_marks, slice_view, station_slices
from cache.grid import Grid
from cache.stations import station_names

DPI = 150
FONT_PT = 9
MALIGNANT = {"color": "#D55E00", "linestyle": "solid", "linewidth": 2.0}
BENIGN = {"color": "#0072B2", "linestyle": "dashed", "linewidth": 1.2}
CT_WINDOW_HU = (-200.0, 400.0)
SUV_WINDOW = (0.0, 6.0)


def _matrix_panel(ax, matrix: np.ndarray, labels: Sequence[str], title: str) -> None:
    """Counts and row percentages (share of the true class) in each cell, coloured by the row percentage."""
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, f"{count}\n{100 * shares[i, j]:.0f}%", ha="center", va="center", fontsize=FONT_PT,
                color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(len(labels)), labels, fontsize=FONT_PT)
    ax.set_yticks(range(len(labels)), labels, fontsize=FONT_PT)
    ax.set_xlabel("predicted", fontsize=FONT_PT)
    ax.set_ylabel("true (row = 100%)", fontsize=FONT_PT)
    ax.set_title(title, fontsize=FONT_PT)


def confusion_figure(names: Sequence[str], station: Sequence[np.ndarray], n_stage: Sequence[np.ndarray],
                     path: Path, dpi: int = DPI) -> Path:
    """One column per method: the pooled station (2x2) and N-stage (4x4) confusion matrices."""
    fig = Figure(figsize=(3.0 * len(names), 6.6))
    axes = fig.subplots(2, len(names), squeeze=False)
    for k, name in enumerate(names):
        title = textwrap.fill(name, 28)
        _matrix_panel(axes[0, k], station[k], ["benign", "malig."], f"{title}\nstations")
        _matrix_panel(axes[1, k], n_stage[k], ["N0", "N1", "N2", "N3"], f"{title}\nN-stage")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    return path


def _station_contours(ax, labels: SliceView, status: np.ndarray) -> None:
    """Each station's outline in its status style, its name beside it."""
    names = station_names()
    left, right, bottom, top = labels.extent_mm
    height, width = labels.image.shape
    y_mm = top + (np.arange(height) + 0.5) * (bottom - top) / height
    x_mm = left + (np.arange(width) + 0.5) * (right - left) / width
    for code in np.unique(labels.image[labels.image > 0]):
        mask = labels.image == code
        style = MALIGNANT if status[code - 1] == 1 else BENIGN
        ax.contour(x_mm, y_mm, mask.astype(float), levels=[0.5], colors=[style["color"]],
                   linestyles=[style["linestyle"]], linewidths=[style["linewidth"]])
        rows, cols = np.nonzero(mask)
        ax.text(x_mm[int(cols.max())] + 2.0, y_mm[int(rows.min())], names[code - 1], color=style["color"],
                fontsize=FONT_PT, fontweight="bold", ha="left", va="center",
                bbox={"facecolor": "white", "alpha": 0.6, "pad": 0.5, "linewidth": 0})


def _status_legend(fig, status: np.ndarray, present: set[int], probability: np.ndarray | None,
                   status_source: str) -> None:
    """Legend under the panels: the two line styles, and every present station with its status (and value)."""
    names = station_names()
    handles = [Line2D([], [], **MALIGNANT), Line2D([], [], **BENIGN)]
    labels = [f"malignant ({status_source})", f"benign ({status_source})"]
    for code in sorted(present):
        value = "" if probability is None else f" {probability[code - 1]:.2f}"
        handles.append(Line2D([], [], **(MALIGNANT if status[code - 1] == 1 else BENIGN)))
        labels.append(f"{names[code - 1]}{value}")
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 7), fontsize=FONT_PT, frameon=False,
               title="station (malignancy probability)" if probability is not None else "station",
               title_fontsize=FONT_PT)


def qa_overlay_figure(ct_hu: np.ndarray, suv: np.ndarray, station_labels: np.ndarray, status: np.ndarray,
                      title: str, path: Path, grid: Grid, probability: np.ndarray | None = None, n_slices: int = 3,
                      dpi: int = DPI, status_source: str = "predicted") -> Path:
    """`qa_overlay` written to `path` as PNG."""
    qa_overlay(ct_hu, suv, station_labels, status, title, grid, probability, n_slices,
               status_source).savefig(path, dpi=dpi)
    return path


def qa_overlay(ct_hu: np.ndarray, suv: np.ndarray, station_labels: np.ndarray, status: np.ndarray, title: str,
               grid: Grid, probability: np.ndarray | None = None, n_slices: int = 3,
               status_source: str = "predicted") -> Figure:
    """CT and PET rows of axial and coronal slices (z, y, x arrays on `grid`) with the fused stations outlined
    by predicted status; an SUV colour bar per PET row and a station legend.

    `status` is int8[17], 1 malignant (`status_source` says whose: "predicted", "true"); `probability` (17,) adds
    each station's value to the legend.
    """
    rows: list[tuple[View, str]] = [(view, modality) for view in ("axial", "coronal") for modality in ("CT", "PET")]
    slices = {view: station_slices(station_labels, view, n_slices) for view in ("axial", "coronal")}
    columns = max(len(s) for s in slices.values())
    fig = Figure(figsize=(3.4 * columns + 0.9, 2.8 * len(rows) + 1.6))
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for r, (view, modality) in enumerate(rows):
        image, window, cmap = (ct_hu, CT_WINDOW_HU, "gray") if modality == "CT" else (suv, SUV_WINDOW, "gray_r")
        for k in range(columns):
            ax = axes[r, k]
            if k >= len(slices[view]):
                ax.set_axis_off()
                continue
            index = slices[view][k]
            picture = slice_view(image, grid, view, index)
            shown = ax.imshow(picture.image, cmap=cmap, vmin=window[0], vmax=window[1], extent=picture.extent_mm,
                              interpolation="nearest")
            _station_contours(ax, slice_view(station_labels, grid, view, index), status)
            orientation_marks(ax, picture, "yellow" if modality == "CT" else "black", FONT_PT + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{modality} {view}, {picture.position_text}", fontsize=FONT_PT)
        if modality == "PET":
            bar = fig.colorbar(shown, ax=list(axes[r]), fraction=0.025, pad=0.01, extend="max")
            bar.set_label("SUV", fontsize=FONT_PT)
            bar.ax.tick_params(labelsize=FONT_PT)
    present = {int(c) for c in np.unique(station_labels) if c > 0}
    _status_legend(fig, status, present, probability, status_source)
    positive = [n for n, s in zip(station_names(), status, strict=True) if s == 1]
    fig.suptitle(f"{title}\nmalignant: {', '.join(positive) if positive else 'none'}", fontsize=FONT_PT + 1)
    fig.subplots_adjust(left=0.02, right=0.9, top=1 - 0.9 / fig.get_figheight(), bottom=1.3 / fig.get_figheight(),
                        hspace=0.18, wspace=0.04)
    return fig
