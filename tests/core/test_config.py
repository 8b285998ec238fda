"""core.config: defaults, TOML, overrides, and errors that name the key."""

from __future__ import annotations

import pytest

from core.config import Config, ConfigError, describe_keys, load_config, parse_override, preset_path


def test_defaults_match_the_design():
    cfg = load_config()
    assert cfg.data.patch_size == 256 and cfg.data.val_fraction == 0.3
    assert cfg.train.loss == "bce+jaccard" and cfg.train.optimizer == "adam"
    assert cfg.train.lr_schedule == () and cfg.monitor.policy == "mark"


def test_seed_preset_reproduces_the_seed():
    cfg = load_config(preset_path("seed"))
    t = cfg.train
    assert (t.optimizer, t.learning_rate, t.momentum, t.nesterov) == ("sgd", 0.01, 0.9, True)
    assert (t.loss, t.jaccard_smooth, t.batch_size, t.epochs, t.patience) == ("jaccard", 1e-12, 4, 200, 10)
    assert cfg.data.val_fraction == 0.3 and cfg.data.augment == "dihedral"


@pytest.mark.parametrize("name", ["default", "demo", "seed", "collapse"])
def test_every_preset_loads(name):
    assert isinstance(load_config(preset_path(name)), Config)


def test_overrides_and_toml_round_trip(tmp_path):
    cfg = load_config(overrides={"train.epochs": 3, "train.lr_schedule": [[10, 0.5]]})
    assert cfg.train.epochs == 3 and cfg.train.lr_schedule == ((10, 0.5),)
    path = tmp_path / "c.toml"
    path.write_text(cfg.to_toml())
    assert load_config(path) == cfg
    assert cfg.replace({"model.depth": 2}).model.depth == 2


@pytest.mark.parametrize(
    "text, key, value",
    [
        ("train.epochs=3", "train.epochs", 3),
        ("monitor.policy=rollback", "monitor.policy", "rollback"),
        ('monitor.policy="stop"', "monitor.policy", "stop"),
        ("train.lr_schedule=[[5, 0.1]]", "train.lr_schedule", [[5, 0.1]]),
    ],
)
def test_parse_override(text, key, value):
    assert parse_override(text) == (key, value)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"train.nope": 1}, ["train.nope", "valid keys", "learning_rate"]),
        ({"bogus.key": 1}, ["bogus.key", "data, model, train, monitor"]),
        ({"train.optimizer": "lion"}, ["train.optimizer", "'sgd'", "'adam'"]),
        ({"train.epochs": "ten"}, ["train.epochs", "integer"]),
        ({"train.learning_rate": -1.0}, ["train.learning_rate", "> 0"]),
        ({"model.batch_norm": 1}, ["model.batch_norm", "true or false"]),
        ({"train.lr_schedule": [[5, 0.1], [2, 0.1]]}, ["lr_schedule", "increasing"]),
        ({"data.patch_size": 100}, ["data.patch_size", "multiple"]),
    ],
)
def test_bad_values_name_the_key(overrides, words):
    with pytest.raises(ConfigError) as err:
        load_config(overrides=overrides)
    for word in words:
        assert word in str(err.value)


def test_bad_files_name_the_file(tmp_path):
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError, match="missing.toml: config file not found"):
        load_config(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("[train\nepochs = 3\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        load_config(broken)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match="unknown.toml: unknown key 'train.epoch'"):
        load_config(unknown)


def test_every_key_is_documented():
    for dotted, _default, help_text, _choices in describe_keys():
        assert help_text, f"{dotted} has no help text"


def test_every_key_is_in_the_configuration_reference():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "CONFIG.md").read_text()
    for dotted, *_ in describe_keys():
        section, key = dotted.split(".")
        assert f"## [{section}]" in doc and f"| `{key}` |" in doc, f"{dotted} missing from docs/CONFIG.md"
