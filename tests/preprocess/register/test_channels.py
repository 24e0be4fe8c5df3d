"""Registration channels made from label arrays on demand equal the stacked one-hot channels they replace."""

import numpy as np
import torch

from preprocess.register.channels import (
    LabelChannels,
    level_channels,
    level_channels_last,
    one_hot,
    windowed_ct,
)
from preprocess.register.warp import channels_last, pool_to


def test_label_channels_equal_pooled_one_hot_channels_at_every_level():
    g = torch.Generator().manual_seed(3)
    labels = torch.randint(0, 6, (2, 17, 19, 23), generator=g, dtype=torch.uint8)
    ct_hu = torch.randint(-1000, 1000, (2, 17, 19, 23), generator=g).float()
    ct = windowed_ct(ct_hu, -200.0, 400.0)
    stacked = torch.cat([torch.stack([one_hot(m, 5) for m in labels]), ct.unsqueeze(1)], dim=1)
    channels = LabelChannels(labels, (1, 2, 3, 4, 5), ct)
    assert channels.shape == tuple(stacked.shape) and channels.device == stacked.device
    for shape in ((17, 19, 23), (9, 10, 12), (4, 5, 6)):
        assert torch.equal(level_channels(channels, shape), pool_to(stacked, shape))
        assert torch.equal(level_channels(stacked, shape), pool_to(stacked, shape))
    subset = channels.select([3, 0])
    assert subset.codes == (4, 1) and subset.ct is None
    assert torch.equal(subset.level((9, 10, 12)), pool_to(stacked[:, [3, 0]], (9, 10, 12)))


def test_channels_last_straight_from_labels_equal_the_channel_first_ones_made_channels_last():
    g = torch.Generator().manual_seed(4)
    labels = torch.randint(0, 6, (2, 17, 19, 23), generator=g, dtype=torch.uint8)
    channels = LabelChannels(labels, (4, 1, 5))  # a subset, out of order, as a stage's channels are
    with_ct = LabelChannels(labels, (4, 1), windowed_ct(torch.zeros(2, 17, 19, 23), -200.0, 400.0))
    for images in (channels, with_ct):
        for shape in ((17, 19, 23), (9, 10, 12)):  # own grid (kernel; with CT: pooled and copied) and a coarser one
            made = level_channels_last(images, shape)
            assert made.dtype == np.float32 and made.flags.c_contiguous
            np.testing.assert_array_equal(made, channels_last(level_channels(images, shape)))
