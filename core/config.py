"""Typed, frozen run configuration, loaded from TOML.

Every key has a default; an unknown key, a wrong type or an invalid choice is a
:class:`ConfigError` that names the key (and the file) and lists what is valid.
The sections and keys are a stable contract (see DESIGN.md): keys may be added,
never renamed or re-purposed. This module never imports TensorFlow or Qt.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_type_hints

__all__ = [
    "ConfigError",
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "MonitorConfig",
    "Config",
    "load_config",
    "parse_override",
    "preset_path",
    "PRESETS_DIR",
    "describe_keys",
]

#: Where the bundled presets live (``resources/presets``).
PRESETS_DIR = Path(__file__).resolve().parent.parent / "resources" / "presets"


class ConfigError(ValueError):
    """A configuration value, key or file is not valid.

    The message names the key (``section.key``) or the file and says how to
    fix it.
    """


@dataclass(frozen=True)
class DataConfig:
    """``[data]``: how tiles become training batches."""

    patch_size: int = 256
    val_fraction: float = 0.3
    augment: str = "dihedral"
    normalize: str = "percentile"
    seed: int = 0


@dataclass(frozen=True)
class ModelConfig:
    """``[model]``: the U-Net's shape."""

    depth: int = 4
    base_filters: int = 32
    batch_norm: bool = True
    dropout: float = 0.0


@dataclass(frozen=True)
class TrainConfig:
    """``[train]``: loss, optimizer, schedule and loop."""

    loss: str = "bce+jaccard"
    jaccard_smooth: float = 1.0
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = False
    lr_schedule: tuple[tuple[int, float], ...] = ()
    clipnorm: float = 0.0
    batch_size: int = 4
    epochs: int = 50
    steps_per_epoch: int = 0
    patience: int = 10
    mixed_precision: bool = False
    strategy: str = "auto"
    keep_checkpoints: int = 0


@dataclass(frozen=True)
class MonitorConfig:
    """``[monitor]``: the collapse detector and what it does on detection."""

    enabled: bool = True
    policy: str = "mark"
    probe_tiles: int = 4
    rollback_lr_factor: float = 0.1
    max_rollbacks: int = 3


@dataclass(frozen=True)
class Config:
    """The whole configuration: one frozen dataclass per TOML section."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Return the resolved configuration as plain TOML/JSON-ready data."""
        out: dict[str, dict[str, Any]] = {}
        for section in dataclasses.fields(self):
            values = dataclasses.asdict(getattr(self, section.name))
            if section.name == "train":
                values["lr_schedule"] = [list(p) for p in values["lr_schedule"]]
            out[section.name] = values
        return out

    def replace(self, overrides: Mapping[str, Any]) -> Config:
        """Return a copy with ``{"section.key": value}`` overrides applied."""
        return _with_overrides(self, overrides, source="config")

    def to_toml(self) -> str:
        """Serialise to TOML text that :func:`load_config` reads back."""
        lines: list[str] = []
        for section, values in self.to_dict().items():
            lines.append(f"[{section}]")
            for key, value in values.items():
                lines.append(f"{key} = {_toml_value(value)}")
            lines.append("")
        return "\n".join(lines)


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "monitor": MonitorConfig,
}

#: Valid choices of every enumerated key.
CHOICES: dict[str, tuple[str, ...]] = {
    "data.augment": ("none", "flips", "dihedral"),
    "data.normalize": ("percentile", "zscore", "none"),
    "train.loss": ("jaccard", "dice", "bce", "bce+jaccard", "bce+dice"),
    "train.optimizer": ("sgd", "adam", "adamw", "rmsprop"),
    "train.strategy": ("auto", "default", "mirrored", "multi_worker"),
    "monitor.policy": ("mark", "stop", "rollback"),
}

#: One line per key: what it does. The GUI uses these as tooltips.
HELP: dict[str, str] = {
    "data.patch_size": "Side of the square random crop used for training, in pixels (multiple of 2^depth).",
    "data.val_fraction": "Share of tiles held out for validation (split by tile, before augmentation).",
    "data.augment": "On-the-fly augmentation: none, flips, or all 8 dihedral transforms.",
    "data.normalize": "Per-band normalisation: percentile (2-98 % of train tiles), zscore, or none.",
    "data.seed": "Seed of the split, the crops and the augmentation.",
    "model.depth": "Number of down-sampling stages of the U-Net.",
    "model.base_filters": "Filters of the first stage; doubled at each stage down.",
    "model.batch_norm": "Batch normalisation after each convolution.",
    "model.dropout": "Dropout rate in the bottleneck (0 = off).",
    "train.loss": "Loss: jaccard, dice, bce, or a sum of bce with jaccard/dice.",
    "train.jaccard_smooth": "Smoothing term of the Jaccard/Dice loss; tiny values (the seed's 1e-12) can lock the loss at 1.0.",
    "train.optimizer": "Optimizer: sgd, adam, adamw or rmsprop.",
    "train.learning_rate": "Learning rate (before any lr_schedule entry applies).",
    "train.momentum": "Momentum (sgd only).",
    "train.nesterov": "Nesterov momentum (sgd only).",
    "train.lr_schedule": "Piecewise-constant schedule: [[step, lr], ...]; step is the optimizer iteration (0-based).",
    "train.clipnorm": "Clip each gradient to this L2 norm (0 = off).",
    "train.batch_size": "Patches per training batch.",
    "train.epochs": "Maximum number of epochs.",
    "train.steps_per_epoch": "Batches per epoch (0 = one pass over the training tiles).",
    "train.patience": "Early stopping: epochs without val_loss improvement (0 = off).",
    "train.mixed_precision": "Train in float16 on a GPU (refused with a warning on the CPU).",
    "train.strategy": "Distribution strategy: auto, default, mirrored, multi_worker.",
    "train.keep_checkpoints": "Per-epoch checkpoints to keep (0 = keep all); last and best are always kept.",
    "monitor.enabled": "Watch the outputs for saturation (collapse) during training.",
    "monitor.policy": "On saturation: mark it, stop the run, or roll back and lower the learning rate.",
    "monitor.probe_tiles": "Validation tiles predicted at every epoch end and at detection.",
    "monitor.rollback_lr_factor": "Rollback multiplies the learning rate (and later scheduled values) by this.",
    "monitor.max_rollbacks": "After this many rollbacks the run stops with status collapsed.",
}


def _split_key(dotted: str, *, source: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    if section not in _SECTIONS or not key:
        raise ConfigError(
            f"{source}: unknown key {dotted!r}; keys look like 'section.key' with "
            f"section one of: {', '.join(_SECTIONS)}"
        )
    valid = [f.name for f in dataclasses.fields(_SECTIONS[section])]
    if key not in valid:
        raise ConfigError(
            f"{source}: unknown key '{section}.{key}'; valid keys in [{section}]: "
            f"{', '.join(valid)}"
        )
    return section, key


def _coerce(dotted: str, hint: Any, value: Any, *, source: str) -> Any:
    where = f"{source}: '{dotted}'"
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, not {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, not {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, not {value!r}")
        if not math.isfinite(float(value)):
            raise ConfigError(f"{where} must be finite, not {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, not {value!r}")
        choices = CHOICES.get(dotted)
        if choices and value not in choices:
            raise ConfigError(
                f"{where} is {value!r}; valid choices: {', '.join(repr(c) for c in choices)}"
            )
        return value
    # lr_schedule: a list of [step, lr] pairs
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{where} must be a list of [step, lr] pairs, not {value!r}")
    pairs: list[tuple[int, float]] = []
    for item in value:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 2
            or isinstance(item[0], bool)
            or not isinstance(item[0], int)
            or item[0] < 0
            or isinstance(item[1], bool)
            or not isinstance(item[1], (int, float))
            or not float(item[1]) > 0
        ):
            raise ConfigError(
                f"{where}: entry {item!r} must be [step, lr] with an integer step >= 0 "
                "and a learning rate > 0, e.g. [[1000, 0.001]]"
            )
        pairs.append((int(item[0]), float(item[1])))
    steps = [p[0] for p in pairs]
    if steps != sorted(set(steps)):
        raise ConfigError(f"{where}: steps must be strictly increasing, got {steps}")
    return tuple(pairs)


_RANGES: dict[str, tuple[float, float, str]] = {
    "data.patch_size": (16, 8192, "between 16 and 8192"),
    "data.val_fraction": (0.0, 0.9, "between 0 and 0.9"),
    "model.depth": (1, 8, "between 1 and 8"),
    "model.base_filters": (1, 1024, "between 1 and 1024"),
    "model.dropout": (0.0, 0.95, "in [0, 0.95]"),
    "train.jaccard_smooth": (0.0, 1e6, "a number >= 0"),
    "train.learning_rate": (1e-12, 100.0, "a number > 0"),
    "train.momentum": (0.0, 1.0, "in [0, 1]"),
    "train.clipnorm": (0.0, 1e9, "a number >= 0 (0 = off)"),
    "train.batch_size": (1, 4096, "between 1 and 4096"),
    "train.epochs": (1, 1_000_000, "at least 1"),
    "train.steps_per_epoch": (0, 10**9, "0 or more"),
    "train.patience": (0, 10**6, "0 or more"),
    "train.keep_checkpoints": (0, 10**6, "0 or more"),
    "monitor.probe_tiles": (0, 64, "between 0 and 64"),
    "monitor.rollback_lr_factor": (1e-6, 1.0, "in (0, 1]"),
    "monitor.max_rollbacks": (0, 1000, "0 or more"),
}


def _from_dict(data: Mapping[str, Any], *, source: str) -> Config:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: expected a table of sections")
    sections: dict[str, Any] = {}
    for name in data:
        if name not in _SECTIONS:
            raise ConfigError(
                f"{source}: unknown section [{name}]; valid sections: {', '.join(_SECTIONS)}"
            )
    for name, cls in _SECTIONS.items():
        values = data.get(name, {})
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: [{name}] must be a table of keys")
        hints = get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            _split_key(f"{name}.{key}", source=source)
            dotted = f"{name}.{key}"
            kwargs[key] = _coerce(dotted, hints[key], value, source=source)
            if dotted in _RANGES:
                low, high, text = _RANGES[dotted]
                if not low <= kwargs[key] <= high:
                    raise ConfigError(f"{source}: '{dotted}' must be {text}, not {value!r}")
        sections[name] = cls(**kwargs)
    cfg = Config(**sections)
    if cfg.data.patch_size % (2**cfg.model.depth):
        raise ConfigError(
            f"{source}: 'data.patch_size' ({cfg.data.patch_size}) must be a multiple of "
            f"2^model.depth = {2**cfg.model.depth}"
        )
    return cfg


def parse_override(text: str) -> tuple[str, Any]:
    """Parse one ``section.key=value`` override; the value is read as TOML.

    A bare word that is not valid TOML (``monitor.policy=rollback``) is taken
    as a string, which is what a user typing it means.

    Raises:
        ConfigError: if there is no ``=`` or the key is unknown.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"--set {text!r}: expected section.key=value, e.g. train.epochs=3")
    _split_key(key, source=f"--set {text}")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return key, value


def preset_path(name: str) -> Path:
    """Return the path of a bundled preset (``"seed"``, ``"demo"``, …)."""
    return PRESETS_DIR / f"{name}.toml"


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Load a TOML configuration and apply ``{"section.key": value}`` overrides.

    Args:
        path: a TOML file; ``None`` gives the defaults.
        overrides: values that replace those of the file.

    Returns:
        The resolved, validated :class:`Config`.

    Raises:
        ConfigError: the file is missing or not TOML, or a key, type or value
            is invalid. The message names the file and the key.
    """
    data: dict[str, Any] = {}
    source = "config"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc})") from None
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML ({exc}); fix the syntax at that line") from None
    cfg = _from_dict(data, source=source)
    if overrides:
        cfg = _with_overrides(cfg, overrides, source=source)
    return cfg


def _with_overrides(cfg: Config, overrides: Mapping[str, Any], *, source: str) -> Config:
    data = cfg.to_dict()
    for dotted, value in overrides.items():
        section, key = _split_key(dotted, source="override")
        data[section][key] = value
    return _from_dict(data, source=f"{source} with overrides")


def describe_keys() -> list[tuple[str, Any, str, tuple[str, ...] | None]]:
    """List every key as ``(section.key, default, help, choices)``, in TOML order."""
    defaults = Config().to_dict()
    out = []
    for section, values in defaults.items():
        for key, default in values.items():
            dotted = f"{section}.{key}"
            out.append((dotted, default, HELP.get(dotted, ""), CHOICES.get(dotted)))
    return out


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return str(value)
