"""hsnet: HSNet and its lightweight baselines, with exact profiling and mobile deployment."""

from hsnet.errors import HSNetError
from hsnet.layers.reparam import reparameterize_model
from hsnet.registry import ModelInfo, create_model, list_models, model_info

__version__ = "0.1.0"

__all__ = ["HSNetError", "ModelInfo", "create_model", "list_models", "model_info", "reparameterize_model"]
