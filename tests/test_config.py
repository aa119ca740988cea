import dataclasses

import pytest

from cifar100_helpers import config
from cifar100_helpers.errors import BudgetError, ConfigError, RunError


def test_recipes_are_frozen_and_valid():
    for name in config.RECIPES:
        cfg = config.make_config(name)
        assert cfg.recipe == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            cfg.epochs = 3


def test_auto_picks_transfer_with_accelerator_and_cpu_without(monkeypatch):
    monkeypatch.setattr(config.machine, "accelerator_present", lambda: False)
    assert config.make_config("auto").recipe == "cpu"
    monkeypatch.setattr(config.machine, "accelerator_present", lambda: True)
    assert config.make_config("auto").recipe == "transfer"


def test_budget_rule():
    assert config.make_config("cpu", epochs=10).epochs == 10
    with pytest.raises(BudgetError, match="--allow-over-budget"):
        config.make_config("cpu", epochs=11)
    over = config.make_config("cpu", epochs=12, allow_over_budget=True)
    assert over.over_budget


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs"),
        ({"epochs": -2}, "epochs"),
        ({"batch_size": 0}, r"batch_size must lie in \[1, inf\)"),
        ({"batch_size": 12.5}, "batch_size must be a whole number"),
        ({"val_fraction": 0.5}, r"\[0, 0.5\)"),
        ({"val_fraction": -0.1}, r"\[0, 0.5\)"),
        ({"image_size": 8}, r"image_size must lie in \[16, inf\)"),
        ({"learning_rate": 0}, r"learning_rate must lie in \(0, inf\)"),
        ({"optimizer": "adam"}, "optimizer"),
    ],
)
def test_invalid_values(overrides, message):
    with pytest.raises(ConfigError, match=message):
        config.make_config("cpu", **overrides)


def test_unknown_recipe_lists_valid_ones():
    with pytest.raises(ConfigError, match="Valid recipes: cpu, seed, transfer, scratch, smoke, auto"):
        config.make_config("resnet")


def test_unknown_parameter_suggests_the_right_one():
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        config.make_config("cpu", batch_sise=128)


def test_from_parameters_none_keeps_recipe_values():
    cfg = config.from_parameters("smoke", data=None, verify=None, epochs=None, seed=4, overrides={"widths": [4, 8]})
    assert (cfg.epochs, cfg.verify, cfg.seed, cfg.widths) == (config.RECIPES["smoke"].epochs, False, 4, (4, 8))


def test_a_saved_config_with_retired_options_at_their_defaults_loads_and_one_switched_on_is_refused(tmp_path):
    from cifar100_helpers.running.notebook_runner import config_from_dict

    saved = config.make_config("smoke").to_dict() | {"dirac": False, "alternating_flip": False, "bias_lr_scale": 1.0,
                                                     "residual": False, "clean_epochs": 0}  # fmt: skip
    assert config_from_dict(dict(saved), tmp_path / "config.json") == config.make_config("smoke")
    with pytest.raises(RunError, match=r"config.json: dirac=True: retired options \(docs/recipes.md\)"):
        config_from_dict(saved | {"dirac": True}, tmp_path / "config.json")
    with pytest.raises(RunError, match=r"residual=True, clean_epochs=1: retired options"):
        config_from_dict(saved | {"residual": True, "clean_epochs": 1}, tmp_path / "config.json")
