"""Building blocks shared by HSNet and the baselines; every block with a deploy form offers ``fuse()``."""

from hsnet.layers.conv_bn_act import ConvBNAct, fold_bn, fuse_conv_bn, make_divisible
from hsnet.layers.eca import ECA, eca_kernel_size
from hsnet.layers.ghost import GhostModule
from hsnet.layers.hetconv import HetConv, ImprovedHetConv
from hsnet.layers.reparam import reparameterize_model
from hsnet.layers.se import SqueezeExcite
from hsnet.layers.shuffle import ChannelShuffle, channel_shuffle

__all__ = [
    "ECA",
    "ChannelShuffle",
    "ConvBNAct",
    "GhostModule",
    "HetConv",
    "ImprovedHetConv",
    "SqueezeExcite",
    "channel_shuffle",
    "eca_kernel_size",
    "fold_bn",
    "fuse_conv_bn",
    "make_divisible",
    "reparameterize_model",
]
