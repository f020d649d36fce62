"""Training and evaluation: the paper's recipe, resumable atomic checkpoints, DDP.

``fit(make_config("fashion-quick", model="hsnet", epochs=2), "runs/x")`` trains; ``evaluate_checkpoint`` evaluates
a checkpoint on a dataset. The ``hsnet train`` / ``hsnet eval`` commands are thin layers over these.
"""

from hsnet.training.build import build_data, build_model, build_optimizer, build_scheduler, lr_factor
from hsnet.training.config import RECIPES, ConfigError, TrainConfig, config_from_dict, config_to_dict, make_config
from hsnet.training.engine import EpochStats, EvalResult, evaluate, train_one_epoch
from hsnet.training.evaluation import EvalReport, evaluate_checkpoint
from hsnet.training.fit import FitResult, RunError, fit, resume_config

__all__ = [
    "RECIPES",
    "ConfigError",
    "EpochStats",
    "EvalReport",
    "EvalResult",
    "FitResult",
    "RunError",
    "TrainConfig",
    "build_data",
    "build_model",
    "build_optimizer",
    "build_scheduler",
    "config_from_dict",
    "config_to_dict",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "lr_factor",
    "make_config",
    "resume_config",
    "train_one_epoch",
]
