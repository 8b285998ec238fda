"""core.preflight: the seed preset warns for the right reasons, the sound presets stay quiet."""

from __future__ import annotations

import pytest

from core.config import load_config, preset_path
from core.preflight import preflight


def kinds(warnings: list) -> list[str]:
    return [w.kind for w in warnings]


def test_seed_preset_warns_about_smooth_and_unclipped_sgd() -> None:
    warnings = preflight(load_config(preset_path("seed")))
    assert kinds(warnings) == ["tiny_smooth", "sgd_unclipped"]
    smooth, sgd = warnings
    assert "smooth 1e-12" in smooth.message and "exactly 1.0" in smooth.message
    assert smooth.fix == {"train.jaccard_smooth": 1.0}
    assert "learning rate 0.01" in sgd.message and "Nesterov" in sgd.message
    assert "0.001" in sgd.message
    assert sgd.fix == {"train.clipnorm": 1.0}


def test_fixes_apply_and_silence_the_warnings() -> None:
    cfg = load_config(preset_path("seed"))
    for warning in preflight(cfg):
        cfg = cfg.replace(warning.fix)
    assert preflight(cfg) == []


@pytest.mark.parametrize("preset", ["default", "demo"])
def test_sound_presets_are_quiet(preset: str) -> None:
    assert preflight(load_config(preset_path(preset)), device={"kind": "cpu"}) == []


def test_defaults_are_quiet() -> None:
    assert preflight(load_config(), band_ranges=[(0.0, 1.0)] * 6, device={"kind": "gpu"}) == []


@pytest.mark.parametrize(
    ("overrides", "kwargs", "kind", "fix"),
    [
        ({"train.loss": "dice", "train.jaccard_smooth": 0.0}, {}, "tiny_smooth",
         {"train.jaccard_smooth": 1.0}),
        ({"train.optimizer": "sgd", "train.learning_rate": 0.001,
          "train.lr_schedule": [[500, 0.05]], "model.batch_norm": False, "train.clipnorm": 0.0},
         {}, "sgd_unclipped", {"train.clipnorm": 1.0}),
        ({"train.learning_rate": 0.01}, {}, "adaptive_high_lr", {"train.learning_rate": 0.001}),
        ({"data.normalize": "none"}, {"band_ranges": [(0.0, 1.0), (0.0, 10000.0)]},
         "not_normalised", {"data.normalize": "percentile"}),
        ({"train.mixed_precision": True}, {"device": {"kind": "cpu"}}, "mixed_precision_cpu",
         {"train.mixed_precision": False}),
        ({"train.patience": 0, "train.epochs": 200}, {}, "no_early_stopping", {"train.patience": 10}),
        ({"data.val_fraction": 0.0}, {}, "no_validation", {"data.val_fraction": 0.2}),
        ({"monitor.enabled": False}, {}, "monitor_off", {"monitor.enabled": True}),
        ({"monitor.policy": "rollback", "monitor.rollback_lr_factor": 1.0}, {}, "rollback_same_lr",
         {"monitor.rollback_lr_factor": 0.1}),
    ],
)
def test_rule_table(overrides: dict, kwargs: dict, kind: str, fix: dict) -> None:
    (warning,) = preflight(load_config(overrides=overrides), **kwargs)
    assert (warning.kind, warning.fix) == (kind, fix)
    assert warning.message


@pytest.mark.parametrize(
    ("overrides", "kwargs"),
    [
        ({"train.loss": "bce+jaccard", "train.jaccard_smooth": 1e-12}, {}),  # BCE keeps a gradient
        ({"train.optimizer": "sgd", "train.learning_rate": 0.01, "model.batch_norm": True}, {}),
        ({"train.optimizer": "sgd", "train.learning_rate": 0.01, "train.clipnorm": 1.0,
          "model.batch_norm": False}, {}),
        ({"data.normalize": "none"}, {"band_ranges": [(0.0, 1.0)] * 3}),
        ({"data.normalize": "none"}, {}),  # no ranges known: nothing to say
        ({"train.mixed_precision": True}, {"device": {"kind": "gpu"}}),
        ({"train.patience": 0, "train.epochs": 8}, {}),
    ],
)
def test_no_warning_when_the_risk_is_absent(overrides: dict, kwargs: dict) -> None:
    assert preflight(load_config(overrides=overrides), **kwargs) == []
