"""Registration QA per atlas and stage: structure Dice, Jacobian determinant range, folding fraction, time.

One record per (atlas, stage) as a plain dict, ready for the cache's /qc group:
`{"atlas", "stage" ('initial' | 'linear' | 'deformable'), "dice": {group: value}, "dice_mean", "jacobian_min",
"jacobian_max", "folding_fraction", "seconds"}`. Dice compares the scan's structure groups with the atlas' groups
warped by that stage (threshold 0.5), over groups present in both. `seconds` is the stage's time for the whole
batch of atlases (they run together). The Jacobian is that of the whole map scan mm -> atlas mm.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

STAGES = ("initial", "linear", "deformable")


def dice_scores(fixed_labels: torch.Tensor, warped_labels: torch.Tensor, n_codes: int) -> torch.Tensor:
    """(n_codes,) Dice per code 1..n_codes of two flat label tensors (1 where a code is in neither)."""
    joint = torch.bincount(fixed_labels.long() * (n_codes + 1) + warped_labels.long(), minlength=(n_codes + 1) ** 2)
    table = joint.reshape(n_codes + 1, n_codes + 1).double()
    overlap = table.diagonal()[1:]
    total = table.sum(1)[1:] + table.sum(0)[1:]
    return torch.where(total > 0, 2.0 * overlap / total.clamp_min(1.0), torch.ones_like(total))


def linear_determinant(matrix_to_moving_mm: np.ndarray) -> float:
    return float(np.linalg.det(matrix_to_moving_mm[:3, :3]))


def qa_record(atlas: str, stage: str, groups: tuple[str, ...], dice: np.ndarray, valid: np.ndarray,
              jacobian: torch.Tensor | float, seconds: float) -> dict:
    """One QA dict (see the module docstring); `jacobian` is a determinant map or one value (linear map)."""
    if isinstance(jacobian, torch.Tensor):
        j_min, j_max = float(jacobian.min()), float(jacobian.max())
        folding = float((jacobian <= 0).float().mean())
    else:
        j_min = j_max = float(jacobian)
        folding = float(jacobian <= 0)
    scores = {g: float(d) for g, d, ok in zip(groups, dice, valid, strict=True) if ok}
    return {
        "atlas": atlas, "stage": stage, "dice": scores,
        "dice_mean": float(np.mean(list(scores.values()))) if scores else float("nan"),
        "jacobian_min": j_min, "jacobian_max": j_max, "folding_fraction": folding, "seconds": float(seconds),
    }


def qa_summary(records: list[dict]) -> dict[str, float]:
    """Mean structure Dice per stage over atlases."""
    return {stage: float(np.mean([r["dice_mean"] for r in records if r["stage"] == stage]))
            for stage in STAGES if any(r["stage"] == stage for r in records)}


def qa_figure(ct_hu: np.ndarray, labels: np.ndarray, path: str | Path, title: str = "") -> Path:
    """PNG of three orthogonal CT slices through the stations' centre with the fused station contours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    inside = np.argwhere(labels > 0)
    centre = inside.mean(0).round().astype(int) if len(inside) else np.array(labels.shape) // 2
    views = [(ct_hu[centre[0]], labels[centre[0]], "axial"), (ct_hu[:, centre[1]], labels[:, centre[1]], "coronal"),
             (ct_hu[:, :, centre[2]], labels[:, :, centre[2]], "sagittal")]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.5))
    for ax, (image, label, name) in zip(axes, views, strict=True):
        origin = "upper" if name == "axial" else "lower"
        ax.imshow(image, cmap="gray", vmin=-200, vmax=400, origin=origin)
        masked = np.ma.masked_equal(label, 0)
        ax.imshow(masked, cmap="tab20", vmin=1, vmax=20, alpha=0.45, origin=origin, interpolation="nearest")
        for code in np.unique(label[label > 0]):
            ax.contour(label == code, levels=[0.5], colors="white", linewidths=0.4, origin=origin)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
