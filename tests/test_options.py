"""One validation for every training option: type, range and choices, with an error naming option and value."""

from __future__ import annotations

import pytest

from padcore.config import TrainConfig
from padcore.errors import PadError


@pytest.mark.parametrize(
    "options, says",
    [
        ({"dim": "abc"}, "'dim' is 'abc'; expected a whole number"),
        ({"lr": -1}, "'lr' is -1.0; allowed: 0 < value"),
        ({"lr": 0}, "'lr' is 0.0; allowed: 0 < value"),
        ({"batch_size": 0}, "'batch_size' is 0; allowed: 1 <= value"),
        ({"dim": 0}, "'dim' is 0; allowed: 1 <= value"),
        ({"heads": 0}, "'heads' is 0; allowed: 1 <= value"),
        ({"dim": 64, "heads": 3}, "'dim' (64) must be a multiple of 'heads' (3)"),
        ({"dropout": 2}, "'dropout' is 2.0; allowed: 0 <= value < 1"),
        ({"dropout": 1.0}, "'dropout' is 1.0; allowed: 0 <= value < 1"),
        ({"max_len": -5}, "'max_len' is -5; allowed: 0 <= value"),
        ({"epochs": -3}, "'epochs' is -3; allowed: 1 <= value"),
        ({"epochs": 0}, "'epochs' is 0; allowed: 1 <= value"),
        ({"patience": -1}, "'patience' is -1; allowed: 1 <= value"),
        ({"infonce_temperature": 0}, "'infonce_temperature' is 0.0; allowed: 0 < value"),
        ({"gamma": float("nan")}, "'gamma' is nan; expected a finite number"),
        ({"fusion": "mean"}, "'fusion' is 'mean'; allowed: bucket, calibrated, global, paper, equal"),
        ({"epochs": True}, "'epochs' is True; expected a whole number"),
        ({"backbone": "bert4rec"}, "'backbone' is 'bert4rec'; allowed: sasrec, gru4rec, caser"),
        ({"loss": "bpr"}, "'loss' is 'bpr'; allowed: bce, ce, sampled"),
        ({"kernel": "rbf"}, "'kernel' is 'rbf'; allowed: gaussian, laplacian, linear, cosine, infonce"),
        ({"experts": ["id", "text"]}, "'experts' is ('id', 'text'); allowed: id, align, llm"),
        ({"experts": []}, "'experts' is (); allowed: id, align, llm"),
        ({"device": "tpu"}, "'device' is 'tpu'; allowed: auto, cpu, cuda, cuda:N"),
        ({"learning_rate": 0.1}, "unknown training option(s) ['learning_rate']"),
    ],
)
def test_bad_training_options_name_the_option_value_and_range(options, says):
    with pytest.raises(PadError) as err:
        TrainConfig.from_options(**options)
    assert says in str(err.value)
    assert "\n" not in str(err.value)


def test_good_values_are_coerced_to_the_field_type():
    cfg = TrainConfig.from_options(dim=32.0, lr=1, experts="id,llm", device="cuda:1")
    assert (cfg.dim, type(cfg.dim)) == (32, int)
    assert (cfg.lr, type(cfg.lr)) == (1.0, float)
    assert cfg.experts == ("id", "llm")
    assert TrainConfig.from_options(cfg.to_dict()) == cfg  # a saved config.json rebuilds the same config


@pytest.mark.parametrize("loss, rate", [("bce", 0.05), ("sampled", 0.05), ("ce", 0.01)])
def test_the_fusion_rate_follows_the_loss_unless_set(loss, rate):
    """`fusion_lr=0` (the default) is resolved by the loss, in phase 3 from the loss its parents trained with."""
    from padcore.models.pad import FINETUNE
    from padcore.registry import MODELS
    from padcore.training import stage_config

    assert TrainConfig.from_options(loss=loss).fusion_lr == rate
    assert TrainConfig.from_options(loss=loss, fusion_lr=0.02).fusion_lr == 0.02
    other = TrainConfig.from_options(loss="bce" if loss == "ce" else "ce").to_dict()  # a parent with the other rate
    parent = {"config": dict(other, loss=loss)}
    cfg, _ = stage_config(MODELS["pad"], FINETUNE, {"pretrain": parent, "align": parent}, {})
    assert cfg.fusion_lr == rate
