"""hsnet.training.config and the builders: recipes, validation, learning-rate schedules, optimizer groups."""

from __future__ import annotations

import math

import pytest
import torch

import hsnet
from hsnet.training import (
    RECIPES,
    ConfigError,
    TrainConfig,
    build_optimizer,
    build_scheduler,
    config_from_dict,
    config_to_dict,
    lr_factor,
    make_config,
)


def test_cifar_paper_recipe_is_table4s():
    c = make_config("cifar-paper")
    assert (c.epochs, c.batch_size, c.lr, c.momentum, c.nesterov, c.weight_decay) == (200, 128, 0.1, 0.9, False, 5e-4)
    assert (c.schedule, c.milestones, c.gamma, c.warmup_epochs) == ("multistep", (60, 120, 160), 0.2, 1.0)
    assert (c.augment, c.crop_padding, c.flip, c.label_smoothing) == (True, 4, True, 0.0)


def test_modern_is_one_flag_away():
    c = make_config("modern")
    assert (c.schedule, c.label_smoothing, c.nesterov, c.decay_norm_bias) == ("cosine", 0.1, True, False)
    assert set(RECIPES) == {"cifar-paper", "modern", "fashion-quick"}


def test_overrides_and_round_trip():
    c = make_config("cifar-paper", epochs=3, milestones=(1, 2), model_args={"drop_rate": 0.0})
    assert c.epochs == 3 and c.recipe == "cifar-paper"
    d = config_to_dict(c)
    assert d["milestones"] == [1, 2]
    assert config_from_dict(d) == c


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"epochs": 0}, "epochs must be an integer >= 1"),
        ({"schedule": "step"}, "unknown schedule 'step'; valid: multistep, cosine"),
        ({"milestones": (120, 60)}, "milestones must be increasing"),
        ({"batch_size": 10, "grad_accum": 3}, "not divisible by grad_accum"),
        ({"device": "tpu"}, "unknown device 'tpu'"),
        ({"lr": -1.0}, "lr must be positive"),
        ({"warmup_epochs": 300}, r"warmup_epochs must be in \[0, epochs=200\]"),
        ({"epochs": "many"}, "epochs must be an integer"),
        ({"learning_rate": 0.1}, "unknown config field.*learning_rate"),
    ],
)
def test_invalid_values_name_the_field(overrides, message):
    with pytest.raises(ConfigError, match=message):
        make_config("cifar-paper", **overrides)


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ConfigError, match="unknown recipe 'paper'; valid recipes: cifar-paper, modern"):
        make_config("paper")


def test_multistep_with_per_iteration_warmup():
    c = make_config("cifar-paper")
    steps = 391  # CIFAR: 50000 / 128, rounded up
    assert lr_factor(c, 0, steps) == pytest.approx(1 / steps)
    assert lr_factor(c, 195, steps) == pytest.approx(196 / steps)
    assert lr_factor(c, steps - 1, steps) == pytest.approx(1.0)
    lrs = {e: c.lr * lr_factor(c, e * steps, steps) for e in (1, 59, 60, 119, 120, 160, 199)}
    assert lrs == pytest.approx({1: 0.1, 59: 0.1, 60: 0.02, 119: 0.02, 120: 0.004, 160: 0.0008, 199: 0.0008})


def test_cosine_goes_from_peak_to_min_lr():
    c = make_config("modern", epochs=10, warmup_epochs=0, min_lr=0.001)
    steps = 100
    assert c.lr * lr_factor(c, 0, steps) == pytest.approx(0.1)
    assert c.lr * lr_factor(c, 500, steps) == pytest.approx(0.001 + 0.099 * 0.5)
    assert c.lr * lr_factor(c, 1000, steps) == pytest.approx(0.001)
    mid = lr_factor(c, 250, steps)
    assert mid == pytest.approx(0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi / 4)))


def test_scheduler_follows_lr_factor_and_its_state_is_plain():
    c = make_config("cifar-paper", epochs=3, milestones=(2,), warmup_epochs=1)
    model = torch.nn.Linear(2, 2)
    opt = build_optimizer(c, model)
    sched = build_scheduler(c, opt, steps_per_epoch=4)
    seen = []
    for _ in range(12):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1, 0.1, 0.1, 0.1, 0.02, 0.02, 0.02, 0.02])
    state = sched.state_dict()
    assert all(v is None for v in state["lr_lambdas"])  # nothing unpicklable goes into a checkpoint


def test_modern_exempts_norm_and_bias_from_weight_decay():
    model = hsnet.create_model("cifar_shufflenetv2", num_classes=10)
    groups = build_optimizer(make_config("modern"), model).param_groups
    decayed = {id(p) for p in groups[0]["params"]}
    assert groups[1]["weight_decay"] == 0.0 and groups[0]["weight_decay"] == 5e-4
    for module in model.modules():
        for p in module.parameters(recurse=False):
            is_norm_or_bias = p.ndim == 1 or isinstance(module, torch.nn.BatchNorm2d)
            assert (id(p) in decayed) != is_norm_or_bias
    assert len(build_optimizer(make_config("cifar-paper"), model).param_groups) == 1


def test_config_is_frozen():
    with pytest.raises(AttributeError):
        TrainConfig().epochs = 3  # type: ignore[misc]
