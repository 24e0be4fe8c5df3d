"""Image channels that registration aligns: one-hot masks of stable structure groups, optionally the windowed CT.

Structures come as TotalSegmentator v2 label arrays (z, y, x). They are grouped into anatomical channels rather than
registered as label numbers: a label value is a name, not an intensity, so grey-value metrics on it are
meaningless (docs/architecture.md#registration). Groups chosen for registration are those that a tumour or a node rarely
displaces:
bones (spine, ribs, sternum, clavicles), the airway, the oesophagus, the heart and the large vessels, and the lungs.
Lung lobes merge per side (fissures vary between patients); vertebrae and ribs merge because the crop cuts them
at different levels per patient; their individual centroids still serve the closed-form initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from preprocess.register.warp import OneHotLabels, channels_last, pool_to
from preprocess.totalseg_labels import label_ids

_VERTEBRAE = tuple(f"vertebrae_{v}" for v in ("C3", "C4", "C5", "C6", "C7")) + tuple(
    f"vertebrae_T{i}" for i in range(1, 13)
) + ("vertebrae_L1", "vertebrae_L2")

STRUCTURE_GROUPS: dict[str, tuple[str, ...]] = {
    "vertebrae": _VERTEBRAE,
    "ribs": tuple(f"rib_{side}_{i}" for side in ("left", "right") for i in range(1, 13)) + ("costal_cartilages",),
    "sternum": ("sternum",),
    "clavicles": ("clavicula_left", "clavicula_right"),
    "trachea": ("trachea",),
    "esophagus": ("esophagus",),
    "aorta": ("aorta",),
    "heart": ("heart", "atrial_appendage_left"),
    "pulmonary_vein": ("pulmonary_vein",),
    "great_veins": ("superior_vena_cava", "brachiocephalic_vein_left", "brachiocephalic_vein_right"),
    "supra_aortic_arteries": (
        "brachiocephalic_trunk", "subclavian_artery_left", "subclavian_artery_right",
        "common_carotid_artery_left", "common_carotid_artery_right",
    ),
    "lung_left": ("lung_upper_lobe_left", "lung_lower_lobe_left"),
    "lung_right": ("lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right"),
}

# Structures whose centroids pair up for the closed-form initialisation: small, rigid or well-bounded ones.
CENTROID_STRUCTURES: tuple[str, ...] = (
    _VERTEBRAE
    + STRUCTURE_GROUPS["ribs"][:-1]
    + ("sternum", "clavicula_left", "clavicula_right", "trachea", "esophagus", "aorta", "heart", "pulmonary_vein",
       "superior_vena_cava", "brachiocephalic_trunk", "brachiocephalic_vein_left", "brachiocephalic_vein_right",
       "lung_upper_lobe_left", "lung_lower_lobe_left", "lung_upper_lobe_right", "lung_middle_lobe_right",
       "lung_lower_lobe_right", "thyroid_gland", "scapula_left", "scapula_right")
)


class ChannelError(ValueError):
    """A structure group name that the registration does not know."""


def group_lookup(groups: tuple[str, ...]) -> np.ndarray:
    """Lookup table v2 label id -> channel number (1-based position in `groups`; 0 = not registered)."""
    unknown = [g for g in groups if g not in STRUCTURE_GROUPS]
    if unknown:
        raise ChannelError(f"unknown structure group(s) {unknown}; known: {', '.join(STRUCTURE_GROUPS)}")
    ids = label_ids("v2")
    lut = np.zeros(max(ids.values()) + 1, dtype=np.int64)
    for channel, group in enumerate(groups, start=1):
        for name in STRUCTURE_GROUPS[group]:
            lut[ids[name]] = channel
    return lut


def group_labels(structures: np.ndarray, groups: tuple[str, ...]) -> np.ndarray:
    """(z, y, x) uint8 array: channel number (1-based) of each voxel's structure group, 0 elsewhere."""
    lut = group_lookup(groups)
    labels = np.asarray(structures)
    if labels.min(initial=0) < 0 or labels.max(initial=0) >= len(lut):
        raise ChannelError(f"structure ids outside 0..{len(lut) - 1}; are these TotalSegmentator v2 ids?")
    return lut[labels].astype(np.uint8)


def one_hot(labels: torch.Tensor, n_channels: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(n_channels, z, y, x) one-hot masks of channel numbers 1..n_channels in a (z, y, x) label tensor."""
    codes = torch.arange(1, n_channels + 1, device=labels.device).view(-1, 1, 1, 1)
    return (labels.unsqueeze(0) == codes).to(dtype)


def windowed_ct(ct_hu: np.ndarray | torch.Tensor, low_hu: float, high_hu: float) -> torch.Tensor:
    """CT mapped linearly from [low_hu, high_hu] to [0, 1], clipped; air and padding are both 0."""
    ct = torch.as_tensor(np.asarray(ct_hu) if not isinstance(ct_hu, torch.Tensor) else ct_hu, dtype=torch.float32)
    return ((ct - low_hu) / (high_hu - low_hu)).clamp_(0.0, 1.0)


def present_groups(group_label_array: np.ndarray, n_groups: int, min_voxels: int) -> np.ndarray:
    """Boolean (n_groups,): which channels hold at least `min_voxels` voxels."""
    counts = np.bincount(group_label_array.ravel(), minlength=n_groups + 1)[1:]
    return counts >= min_voxels


@dataclass(frozen=True)
class LabelChannels:
    """(N, C, z, y, x) float32 channels made on demand per pyramid level from N label arrays: the one-hot masks of
    `codes` (0/1 at full resolution, box-averaged fractions on a coarser level), then the windowed CT if given.

    Held as uint8 labels (and the CT), the float32 channels of a level exist only while that level runs: at 1 mm
    and 12 channels that is 1 byte per voxel instead of 48. Each channel is pooled on its own, which gives the
    values that pooling the stacked channels gives (the pooling works plane by plane).
    """

    labels: torch.Tensor
    codes: tuple[int, ...]
    ct: torch.Tensor | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        """(N, C, z, y, x), as the full-resolution channel tensor would have."""
        return (self.labels.shape[0], len(self.codes) + (self.ct is not None), *self.labels.shape[1:])

    @property
    def device(self) -> torch.device:
        return self.labels.device

    def select(self, channels: list[int]) -> LabelChannels:
        """The label channels at positions `channels` (the CT channel is left out)."""
        return LabelChannels(self.labels, tuple(self.codes[c] for c in channels))

    def level(self, shape: tuple[int, ...]) -> torch.Tensor:
        """(N, C, *shape) float32 channels on a level of the same box."""
        n, n_channels = self.shape[:2]
        out = torch.empty((n, n_channels, *shape), dtype=torch.float32, device=self.device)
        for c, code in enumerate(self.codes):
            out[:, c] = pool_to((self.labels == code).to(torch.float32).unsqueeze(1), shape)[:, 0]
        if self.ct is not None:
            out[:, -1] = pool_to(self.ct.unsqueeze(1), shape)[:, 0]
        return out


def level_channels(images: torch.Tensor | LabelChannels, shape: tuple[int, ...]) -> torch.Tensor:
    """(N, C, *shape) channels of `images` on a pyramid level: pooled from a tensor, or made from label arrays."""
    return images.level(shape) if isinstance(images, LabelChannels) else pool_to(images, shape)


def level_channels_last(images: torch.Tensor | LabelChannels, shape: tuple[int, ...],
                        labels_if_one_hot: bool = False) -> np.ndarray | OneHotLabels:
    """`channels_last(level_channels(images, shape))`, the CPU kernels' (N, z, y, x, C) float32 layout. One-hot
    label channels on their own grid (the `full` preset's finest level) are made straight from the uint8 labels
    by one parallel pass, without the channel-first copy (at 1 mm, 12 channels: 0.75 GB per atlas), or, with
    `labels_if_one_hot`, left as the labels (`OneHotLabels`, for `warp_channels_last`)."""
    on_own_grid = tuple(shape) == tuple(images.shape[2:])
    if isinstance(images, LabelChannels) and images.ct is None and on_own_grid and images.device.type == "cpu":
        from preprocess.register.kernels import one_hot_channels_last_kernel

        labels, codes = images.labels.numpy(), np.asarray(images.codes, dtype=np.int64)
        if labels_if_one_hot:
            return OneHotLabels(labels, codes)
        out = np.empty((*labels.shape, len(codes)), dtype=np.float32)
        one_hot_channels_last_kernel(labels, codes, out)
        return out
    return channels_last(level_channels(images, shape))
