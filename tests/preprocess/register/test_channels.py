"""Registration channels made from label arrays on demand equal the stacked one-hot channels they replace."""

import torch

from preprocess.register.channels import LabelChannels, level_channels, one_hot, windowed_ct
from preprocess.register.warp import pool_to


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
