"""Building blocks shared by HSNet and the baselines; every block with a deploy form offers ``fuse()``."""

from hsnet.layers.conv_bn_act import ConvBNAct, fold_bn, fuse_conv_bn, make_divisible
from hsnet.layers.reparam import reparameterize_model
from hsnet.layers.shuffle import ChannelShuffle, channel_shuffle

__all__ = [
    "ChannelShuffle",
    "ConvBNAct",
    "channel_shuffle",
    "fold_bn",
    "fuse_conv_bn",
    "make_divisible",
    "reparameterize_model",
]
