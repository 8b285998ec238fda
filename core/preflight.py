"""Pre-flight check of a run's configuration: known ways to collapse, said before training.

Each :class:`PreflightWarning` gives the reason in plain words and a ``fix``:
the config changes (``{"section.key": value}``) that remove the risk, which the
GUI can apply with one click (``cfg.replace(warning.fix)``). Only settings with
a known, concrete failure mode are reported; a sound configuration (such as
``resources/presets/default.toml``) gets an empty list.

This module is pure Python: it must never import TensorFlow, Keras or Qt.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.config import Config

__all__ = ["PreflightWarning", "preflight"]

#: Jaccard/Dice smoothing below this can lock the loss at exactly 1.0.
TINY_SMOOTH = 1e-6
#: SGD learning rates at or above this, unclipped and without batch norm, are risky.
SGD_HIGH_LR = 0.01
#: Adaptive optimizers (Adam, AdamW, RMSprop) at or above this often diverge on a U-Net.
ADAPTIVE_HIGH_LR = 0.01
#: A band whose raw values reach beyond this is far from unit scale.
RAW_SCALE_LIMIT = 50.0
#: Without early stopping, this many epochs or more is a long run to leave unattended.
MANY_EPOCHS = 100


@dataclass(frozen=True)
class PreflightWarning:
    """A configuration risk: ``kind`` (stable id), ``message`` (why, in plain
    words), ``fix`` (config changes that remove it)."""

    kind: str
    message: str
    fix: dict[str, Any] = field(default_factory=dict)


def _peak_lr(cfg: Config) -> tuple[float, int | None]:
    """The highest learning rate the run will use, and the schedule step that sets it."""
    best, at = cfg.train.learning_rate, None
    for step, lr in cfg.train.lr_schedule:
        if lr > best:
            best, at = lr, step
    return best, at


def _lr_words(lr: float, at: int | None) -> str:
    return f"learning rate {lr:g}" + (f" (the schedule sets it at step {at})" if at is not None else "")


def preflight(
    cfg: Config,
    *,
    band_ranges: Sequence[tuple[float, float]] | None = None,
    device: Mapping[str, Any] | None = None,
) -> list[PreflightWarning]:
    """Check ``cfg`` for known ways to waste or wreck a run.

    Args:
        cfg: the resolved configuration.
        band_ranges: per-band ``(min, max)`` of the raw training tiles, when
            known; used to judge ``data.normalize = "none"``.
        device: where it will train, e.g. ``{"kind": "cpu"}`` or
            ``{"kind": "gpu", "name": ...}``.

    Returns:
        The warnings, most dangerous first (collapse risks, then waste).
    """
    t, m = cfg.train, cfg.model
    out: list[PreflightWarning] = []

    overlap = {"jaccard": "Jaccard", "dice": "Dice"}.get(t.loss)
    if overlap and t.jaccard_smooth < TINY_SMOOTH:
        out.append(
            PreflightWarning(
                "tiny_smooth",
                f"The {overlap} loss uses smooth {t.jaccard_smooth:g}. Once the predictions "
                "reach 0 it reads exactly 1.0 and, through a saturated sigmoid, passes no "
                "gradient, so the run cannot recover (the seed's failure). Use smooth 1.0, "
                f"or add a BCE term (loss \"bce+{t.loss}\"), which keeps a gradient on the logits.",
                {"train.jaccard_smooth": 1.0},
            )
        )

    lr, at = _peak_lr(cfg)
    if t.optimizer == "sgd" and lr >= SGD_HIGH_LR and t.clipnorm == 0 and not m.batch_norm:
        momentum = f" with momentum {t.momentum:g}" + (" (Nesterov)" if t.nesterov else "")
        out.append(
            PreflightWarning(
                "sgd_unclipped",
                f"SGD{momentum} at {_lr_words(lr, at)}, with no gradient clipping and no batch "
                "norm, is a known way to push a U-Net's outputs to saturation in a single "
                "large step. Clip the gradient norm to 1.0 (or lower the learning rate to "
                f"{lr / 10:g}, turn on batch norm, or use Adam).",
                {"train.clipnorm": 1.0},
            )
        )
    elif t.optimizer != "sgd" and lr >= ADAPTIVE_HIGH_LR:
        out.append(
            PreflightWarning(
                "adaptive_high_lr",
                f"{t.optimizer.capitalize()} at {_lr_words(lr, at)} is ten times the usual 1e-3 "
                "and often throws a U-Net's outputs to one end. Use 1e-3.",
                {"train.learning_rate": 1e-3}
                if at is None
                else {"train.learning_rate": min(t.learning_rate, 1e-3), "train.lr_schedule": []},
            )
        )

    if cfg.data.normalize == "none" and band_ranges:
        far = [
            (i, lo, hi)
            for i, (lo, hi) in enumerate(band_ranges)
            if max(abs(lo), abs(hi)) > RAW_SCALE_LIMIT
        ]
        if far:
            i, lo, hi = far[0]
            out.append(
                PreflightWarning(
                    "not_normalised",
                    f"data.normalize is \"none\" but {len(far)} of {len(band_ranges)} bands are far "
                    f"from unit scale (band {i} spans {lo:g} to {hi:g}). Raw values that large make "
                    "the first updates huge and can saturate the outputs at once. Use "
                    "\"percentile\" normalisation.",
                    {"data.normalize": "percentile"},
                )
            )

    if t.mixed_precision and device is not None and str(device.get("kind", "")).lower() == "cpu":
        out.append(
            PreflightWarning(
                "mixed_precision_cpu",
                "Mixed precision was requested but the run trains on the CPU, where float16 "
                "is slower than float32 and gains nothing. Turn it off.",
                {"train.mixed_precision": False},
            )
        )

    if t.patience == 0 and t.epochs >= MANY_EPOCHS:
        out.append(
            PreflightWarning(
                "no_early_stopping",
                f"Early stopping is off (patience 0) and the run is set to {t.epochs} epochs: all "
                "of them will run even when validation stopped improving long before. Use "
                "patience 10.",
                {"train.patience": 10},
            )
        )
    if t.patience > 0 and cfg.data.val_fraction == 0:
        out.append(
            PreflightWarning(
                "no_validation",
                f"Early stopping (patience {t.patience}) watches val_loss, but val_fraction is 0, "
                "so there is no validation set to watch. Hold out 20 % of the tiles.",
                {"data.val_fraction": 0.2},
            )
        )

    mon = cfg.monitor
    if not mon.enabled:
        out.append(
            PreflightWarning(
                "monitor_off",
                "The collapse monitor is off: if the outputs saturate, nothing will say so and "
                "the run will go on training a constant. Turn it on.",
                {"monitor.enabled": True},
            )
        )
    elif mon.policy == "rollback" and mon.rollback_lr_factor >= 1.0:
        out.append(
            PreflightWarning(
                "rollback_same_lr",
                "monitor.policy is \"rollback\" with rollback_lr_factor 1.0: the restored run "
                "continues at the same learning rate and is likely to collapse again. Use 0.1.",
                {"monitor.rollback_lr_factor": 0.1},
            )
        )
    return out
