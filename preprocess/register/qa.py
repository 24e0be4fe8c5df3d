"""Registration QA per atlas and stage: structure Dice, Jacobian determinant range, folding fraction, time.

One record per (atlas, stage) as a plain dict, ready for the cache's /qc group:
`{"atlas", "stage" ('initial' | 'linear' | 'deformable'), "dice": {group: value}, "dice_mean", "held_out_dice":
{group: value}, "held_out_dice_mean", "jacobian_min", "jacobian_max", "folding_fraction", "seconds"}`. Dice
compares the scan's structure groups with the atlas' groups warped by that stage (argmax), over groups present in
both. `dice` covers the groups that drove the registration, so it is high by construction; `held_out_dice` the
groups the preset holds out of registration (`qa_held_out_channels`), an independent check. `seconds` is the
stage's time for the whole batch of atlases (they run together). The Jacobian is that of the whole map scan mm ->
atlas mm. `registration_check` sums the records of a scan up against the preset's limits (a flag, stored in
`/qc/registration_check` and shown by `cache.describe.registration_check_text`);
`qa_figure` draws the fused stations over the CT for a person to check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cache.display import SLICE_AXIS, orientation_marks, slice_view, station_colours
from cache.grid import Grid
from cache.stations import station

STAGES = ("initial", "linear", "deformable")


@dataclass(frozen=True)
class QaTarget:
    """The scan's structure groups on the QA grid: flat labels (1-based positions in `groups`: the driving
    groups, then the held-out ones) and which groups the scan has."""

    labels: torch.Tensor
    valid: np.ndarray
    groups: tuple[str, ...]


def dice_scores(fixed_labels: torch.Tensor, warped_labels: torch.Tensor, n_codes: int) -> torch.Tensor:
    """(n_codes,) Dice per code 1..n_codes of two flat label tensors (1 where a code is in neither)."""
    joint = torch.bincount(fixed_labels.long() * (n_codes + 1) + warped_labels.long(), minlength=(n_codes + 1) ** 2)
    table = joint.reshape(n_codes + 1, n_codes + 1).double()
    overlap = table.diagonal()[1:]
    total = table.sum(1)[1:] + table.sum(0)[1:]
    return torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), torch.ones_like(total))


def _mean(values) -> float:
    values = list(values)
    return float(np.mean(values)) if values else float("nan")


def qa_record(atlas: str, stage: str, groups: tuple[str, ...], dice: np.ndarray, valid: np.ndarray,
              jacobian: torch.Tensor | float, seconds: float, held_out: tuple[str, ...] = ()) -> dict:
    """One QA dict (see the module docstring); `jacobian` is a determinant map or one value (linear map);
    groups named in `held_out` are scored apart from those that drove the registration."""
    if isinstance(jacobian, torch.Tensor):
        j_min, j_max = float(jacobian.min()), float(jacobian.max())
        folding = float((jacobian <= 0).float().mean())
    else:
        j_min = j_max = float(jacobian)
        folding = float(jacobian <= 0)
    scores = {g: float(d) for g, d, ok in zip(groups, dice, valid, strict=True) if ok}
    driving = {g: v for g, v in scores.items() if g not in held_out}
    held = {g: v for g, v in scores.items() if g in held_out}
    return {
        "atlas": atlas, "stage": stage, "dice": driving, "dice_mean": _mean(driving.values()),
        "held_out_dice": held, "held_out_dice_mean": _mean(held.values()),
        "jacobian_min": j_min, "jacobian_max": j_max, "folding_fraction": folding, "seconds": float(seconds),
    }


def qa_summary(records: list[dict]) -> dict[str, float]:
    """Mean structure Dice per stage over atlases."""
    return {stage: float(np.mean([r["dice_mean"] for r in records if r["stage"] == stage]))
            for stage in STAGES if any(r["stage"] == stage for r in records)}


def registration_check(records: list[dict], held_out_dice_min: float, jacobian_min: float,
                       jacobian_max: float) -> dict[str, float | str]:
    """One scan's registration summed up after the deformable stage, and its flag.

    Driving and held-out structure Dice (means over atlases), the worst atlas' held-out Dice, the Jacobian
    range over atlases, and `flags`: "held_out_dice" when the worst atlas' held-out Dice is below
    `held_out_dice_min` (> 0) or no held-out structure could be scored, "jacobian" when the range leaves
    [`jacobian_min`, `jacobian_max`]; "" when neither. The limits are stored beside the values.
    """
    final = [r for r in records if r["stage"] == "deformable"]
    held = [r["held_out_dice_mean"] for r in final if np.isfinite(r["held_out_dice_mean"])]
    values: dict[str, float | str] = {
        "driving_dice": _mean(r["dice_mean"] for r in final), "held_out_dice": _mean(held),
        "held_out_dice_min": min(held, default=float("nan")),
        "jacobian_min": min((r["jacobian_min"] for r in final), default=float("nan")),
        "jacobian_max": max((r["jacobian_max"] for r in final), default=float("nan")),
        "limit_held_out_dice_min": held_out_dice_min, "limit_jacobian_min": jacobian_min,
        "limit_jacobian_max": jacobian_max,
    }
    flags = []
    if held_out_dice_min > 0 and not (held and min(held) >= held_out_dice_min):
        flags.append("held_out_dice")
    if final and not (jacobian_min <= values["jacobian_min"] and values["jacobian_max"] <= jacobian_max):
        flags.append("jacobian")
    values["flags"] = " ".join(flags)
    return values


def qa_figure(ct_hu: np.ndarray, labels: np.ndarray, path: str | Path, title: str = "", *, grid: Grid) -> Path:
    """PNG of axial, coronal and sagittal CT slices (z, y, x arrays on `grid`) through the stations' centre, each
    station filled in its own colour (`cache.display`: left/right pairs distinct) and named in a legend.

    A matplotlib `Figure` rendered by Agg on save, so no global backend is set (a notebook's plots keep working).
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colours = {station(name).code: np.array(rgb) / 255 for name, rgb in station_colours().items()}
    lut = np.zeros((256, 4))
    for code, rgb in colours.items():
        lut[code] = (*rgb, 0.45)
    inside = np.argwhere(labels > 0)
    centre = inside.mean(0).round().astype(int) if len(inside) else np.array(labels.shape) // 2
    fig = Figure(figsize=(12, 5.2))
    axes = fig.subplots(1, 3)
    for ax, view in zip(axes, ("axial", "coronal", "sagittal"), strict=True):
        index = int(centre[SLICE_AXIS[view]])
        picture, stations = slice_view(ct_hu, grid, view, index), slice_view(labels, grid, view, index)
        ax.imshow(picture.image, cmap="gray", vmin=-200, vmax=400, extent=picture.extent_mm, interpolation="nearest")
        ax.imshow(lut[stations.image], extent=stations.extent_mm, interpolation="nearest")
        orientation_marks(ax, picture)
        ax.set_title(f"{view}, {picture.position_text}", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    present = sorted(int(c) for c in np.unique(labels) if c > 0)
    names = {station(name).code: name for name in station_colours()}
    fig.legend([Patch(facecolor=colours[c], edgecolor="black") for c in present], [names[c] for c in present],
               loc="lower center", ncol=min(max(len(present), 1), 9), fontsize=9, frameon=False, title="station",
               title_fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.9, bottom=0.2, wspace=0.04)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path
