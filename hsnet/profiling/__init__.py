"""Parameter / MAC / FLOP profiling and its human-readable reports."""

from hsnet.profiling.counter import FLOP_CATEGORIES, KINDS, LayerStats, Profile, conv_kind, profile_model

__all__ = ["FLOP_CATEGORIES", "KINDS", "LayerStats", "Profile", "conv_kind", "profile_model"]
