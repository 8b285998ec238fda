"""Tilewatch's headless core: tiles, U-Net training, collapse detection, run records.

The public API is lazy: ``import core`` is cheap and imports TensorFlow only
when a name that needs it (``Trainer``, ``build_unet``) is first used, so the
GUI can show its window first. This package never imports Qt.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_LAZY = {
    "load_config": "core.config",
    "Config": "core.config",
    "ConfigError": "core.config",
    "Trainer": "core.trainer",
    "TrainResult": "core.trainer",
    "build_unet": "core.model",
    "read_run": "core.runstore",
    "RunError": "core.runstore",
    "DatasetError": "core.tiles",
}

__all__ = sorted(_LAZY)

if TYPE_CHECKING:  # pragma: no cover
    from core.config import Config, ConfigError, load_config
    from core.model import build_unet
    from core.runstore import RunError, read_run
    from core.tiles import DatasetError
    from core.trainer import Trainer, TrainResult


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'core' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
