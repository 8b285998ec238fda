"""The cause of a collapse and its remedies, in words, from what was measured.

:func:`diagnose` turns a :class:`core.detector.SaturationFinding` (and the
configuration that produced it) into a one-line summary, a paragraph that
explains what happened with the real numbers, and ranked remedies, each a
concrete config change the GUI can apply. Every sentence is chosen by the
measured signals, never by a template that assumes the cause: a preceding
update or gradient spike or a gradual drift; all-background, all-foreground or
a softmax constant class; exploded logits that still vary across the image or
dead units that left a constant; a gradient that died or is still alive.

This module is pure Python: it must never import TensorFlow, Keras or Qt.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from statistics import median
from typing import Any

from core.config import Config
from core.detector import SaturationFinding, WarningFinding

__all__ = ["Remedy", "Diagnosis", "diagnose"]

#: A jump of the update ratio or gradient norm of at least this factor is a spike.
SPIKE_FACTOR = 10.0
#: |mean logit| (or the largest logit) beyond these means the logits exploded.
EXPLODED_MEAN = 50.0
EXPLODED_MAX = 100.0
#: A spatial logit spread below this (or below 1 % of its earlier value) means a constant output.
DEAD_SPREAD = 1e-3
#: Jaccard/Dice smoothing below this can lock the loss at 1.0.
TINY_SMOOTH = 1e-6

_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class Remedy:
    """One ranked fix: ``changes`` maps config keys to the new values to apply."""

    rank: int
    title: str
    why: str
    changes: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping stored in the saturation event."""
        return asdict(self)


@dataclass(frozen=True)
class Diagnosis:
    """``summary``: one line; ``text``: the full explanation; ``remedies``: best first."""

    summary: str
    text: str
    remedies: tuple[Remedy, ...] = ()


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _ok(value: float) -> bool:
    return math.isfinite(value)


def _n(value: float) -> str:
    """A number in words: 3 significant digits, ``1.2×10⁴`` when large or small."""
    if not _ok(value):
        return "unknown"
    if value == 0:
        return "0"
    if 1e-3 <= abs(value) < 1e4:
        text = f"{value:.3g}"
        return f"{value:.0f}" if "e" in text else text
    mantissa, exponent = f"{value:.1e}".split("e")
    sign = "−" if mantissa.startswith("-") else ""
    mantissa = mantissa.lstrip("-").removesuffix(".0")
    power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
    return f"{sign}{power}" if mantissa == "1" else f"{sign}{mantissa}×{power}"


def _pct(fraction: float) -> str:
    if not _ok(fraction):
        return "an unknown share"
    pct = 100 * fraction
    return f"{pct:.1f} %" if pct < 99.95 or pct == 100 else f"{pct:.2f} %"


def _lr(value: float) -> float:
    """Round a suggested learning rate to one significant digit."""
    return float(f"{value:.1g}")


def _fill_from_rows(
    finding: SaturationFinding, rows: Sequence[Mapping[str, float]]
) -> dict[str, float]:
    """The finding's signals, with any missing before/peak numbers computed from ``rows``."""
    s = {k: _num(v) for k, v in finding.signals.items()}
    before = [r for r in rows if _num(r.get("step")) < finding.onset_step]
    if not before:
        return s
    for key in ("update_ratio", "grad_norm", "loss", "logit_spread", "logit_mean", "lr"):
        if not _ok(s.get(f"{key}_before", math.nan)):
            vals = [_num(r.get(key)) for r in before[-60:-10] or before]
            vals = [v for v in vals if _ok(v)]
            if vals:
                s[f"{key}_before"] = float(median(vals))
    if not _ok(s.get("update_ratio_peak", math.nan)):
        window = [r for r in rows if finding.onset_step - 10 <= _num(r.get("step")) <= finding.onset_step]
        window = [r for r in window if _ok(_num(r.get("update_ratio")))]
        if window:
            peak = max(window, key=lambda r: _num(r.get("update_ratio")))
            s["update_ratio_peak"] = _num(peak.get("update_ratio"))
            s["peak_step"] = _num(peak.get("step"))
            s["update_peak_epoch"] = _num(peak.get("epoch"))
            s["lr_at_peak"] = _num(peak.get("lr"))
            base = s.get("update_ratio_before", math.nan)
            s["update_jump"] = s["update_ratio_peak"] / base if _ok(base) and base > 0 else math.nan
    return s


@dataclass(frozen=True)
class _Evidence:
    """What the measured signals say, as flags the sentences and remedies read."""

    spike: str  # "update", "grad" or ""
    exploded: bool
    dead_units: bool
    gradient_dead: bool
    tiny_smooth: bool


def _evidence(s: Mapping[str, float], cfg: Config) -> _Evidence:
    if _num(s.get("update_jump")) >= SPIKE_FACTOR:
        spike = "update"
    elif _num(s.get("grad_jump")) >= SPIKE_FACTOR:
        spike = "grad"
    else:
        spike = ""
    mean, top = abs(_num(s.get("logit_mean"))), _num(s.get("logit_absmax"))
    spread, spread_before = _num(s.get("logit_spread")), _num(s.get("logit_spread_before"))
    dead_units = _ok(spread) and (
        spread < DEAD_SPREAD or (_ok(spread_before) and spread < 0.01 * spread_before)
    )
    exploded = (_ok(mean) and mean >= EXPLODED_MEAN) or (_ok(top) and top >= EXPLODED_MAX)
    tiny = cfg.train.loss in ("jaccard", "dice") and cfg.train.jaccard_smooth < TINY_SMOOTH
    return _Evidence(spike, exploded and not dead_units, dead_units,
                     _num(s.get("gradient_dead")) == 1.0, tiny)


def _trigger_sentence(f: SaturationFinding, s: Mapping[str, float], ev: _Evidence) -> str:
    if ev.spike:
        key, label = (("update_ratio", "update/weight ratio") if ev.spike == "update"
                      else ("grad_norm", "gradient norm"))
        peak_step = int(_num(s.get(f"{ev.spike}_peak_step", s.get("peak_step"))))
        peak_epoch = _num(s.get(f"{ev.spike}_peak_epoch"))
        epoch = int(peak_epoch) if _ok(peak_epoch) else f.onset_epoch
        text = (f"At step {peak_step} (epoch {epoch}) the {label} jumped from "
                f"{_n(_num(s.get(f'{key}_before')))} to {_n(_num(s.get(f'{key}_peak')))} "
                f"({_num(s.get(f'{ev.spike}_jump')):.0f}× its recent median)")
        lr_before, lr_peak = _num(s.get("lr_before")), _num(s.get("lr_at_peak"))
        if _ok(lr_before) and _ok(lr_peak) and lr_peak >= 2 * lr_before:
            text += f", as the learning rate went from {_n(lr_before)} to {_n(lr_peak)}"
        return text + "."
    ratio = _num(s.get("update_ratio_before"))
    peak = _num(s.get("update_ratio_peak"))
    steady = f" (the update/weight ratio stayed near {_n(ratio)}, at most {_n(peak)})" if _ok(ratio) and _ok(peak) else ""
    return (f"No update or gradient spike preceded it{steady}: the outputs drifted to one end "
            f"gradually, and from step {f.onset_step} (epoch {f.onset_epoch}) they stayed there.")


def _pinned_sentence(f: SaturationFinding, s: Mapping[str, float], ev: _Evidence) -> str:
    k = int(_num(s.get("steps_to_pin"))) if ev.spike and _ok(_num(s.get("steps_to_pin"))) else 0
    lead = f"Within {k} step{'s' if k != 1 else ''}, " if ev.spike else "By then "
    pinned, mask = _pct(_num(s.get("pinned_frac"))), _num(s.get("mask_frac"))
    if f.kind == "all_background":
        return (f"{lead}{pinned} of output pixels were pinned below 1e-3 while the masks held "
                f"{_pct(mask)} foreground (recall {_pct(_num(s.get('recall')))}).")
    if f.kind == "all_foreground":
        return (f"{lead}{pinned} of output pixels were pinned above 1 − 1e-3 while the masks held "
                f"only {_pct(mask)} foreground. The loss ({_n(_num(s.get('loss_after')))}) still "
                "moves from batch to batch, because it is 1 − the batch's mask fraction, so the "
                "loss value alone hides this collapse.")
    label = int(_num(s.get("dominant_class", -1)))
    return (f"{lead}the softmax predicted class {label} for "
            f"{_pct(_num(s.get('dominant_frac')))} of pixels, {_pct(_num(s.get('pinned_any')))} "
            f"of them pinned (top probability above 1 − 1e-3), while "
            f"{_pct(_num(s.get('error_frac')))} of the mask pixels belong to other classes.")


def _logit_sentence(s: Mapping[str, float], ev: _Evidence, *, softmax: bool) -> str:
    what = "margin between the top two logits" if softmax else "logits"
    mean, spread = _num(s.get("logit_mean")), _num(s.get("logit_spread"))
    verb, vary = ("sits", "varies") if softmax else ("sit", "vary")
    if ev.dead_units:
        before = _num(s.get("logit_spread_before"))
        was = f", down from {_n(before)}" if _ok(before) else ""
        return (f"The {what} {verb} near {_n(mean)} and no longer {vary} across the image "
                f"(spatial spread {_n(spread)}{was}): the decoder's units have died, so the "
                "output is a constant set by the last bias, whatever the input.")
    if ev.exploded:
        return (f"The {what} {verb} near {_n(mean)} (largest {_n(_num(s.get('logit_absmax')))}) "
                f"and still {vary} across the image (spatial spread {_n(spread)}): they exploded; "
                "the units are alive but pushed far past where the output can change.")
    return (f"The {what} {verb} near {_n(mean)} with spatial spread {_n(spread)}: moderate "
            "values, pinned by their sign more than by their size.")


def _gradient_sentence(f: SaturationFinding, s: Mapping[str, float], ev: _Evidence,
                       cfg: Config, *, softmax: bool) -> str:
    g0, g1 = _num(s.get("grad_norm_before")), _num(s.get("grad_norm_after"))
    if not ev.gradient_dead:
        return (f"The gradient is still alive (norm {_n(g1)} against {_n(g0)} before), so the run "
                "may recover by itself, but the outputs stayed pinned and wrong for "
                f"{int(_num(s.get('evidence_steps')))} steps.")
    text = f"The gradient norm fell from {_n(g0)} to {_n(g1)}, so the run cannot recover by itself: "
    if ev.dead_units:
        text += "dead ReLUs pass no gradient to the layers before them"
    elif softmax:
        text += "a softmax pinned at one class passes no gradient"
    else:
        text += "a sigmoid saturated in float32 passes no gradient"
    loss = {"jaccard": "Jaccard", "dice": "Dice"}.get(cfg.train.loss)
    if ev.tiny_smooth and loss and not ev.dead_units and not softmax:
        text += (f", and a {loss} loss with smooth {cfg.train.jaccard_smooth:g} acts only through "
                 "it, so it gives it none to pass")
        loss_after = _num(s.get("loss_after"))
        if f.kind == "all_background" and _ok(loss_after) and loss_after >= 0.9999:
            text += f" (the loss now reads {loss_after:.4f}, as in the seed)"
    return text + "."


def _remedies(f: SaturationFinding, s: Mapping[str, float], ev: _Evidence,
              cfg: Config) -> tuple[Remedy, ...]:
    t = cfg.train
    scored: list[tuple[float, str, str, dict[str, Any]]] = []

    changes: dict[str, Any] = {"train.learning_rate": _lr(t.learning_rate / 10)}
    if t.lr_schedule:
        changes["train.lr_schedule"] = [[step, _lr(lr / 10)] for step, lr in t.lr_schedule]
    jump = _num(s.get(f"{ev.spike}_jump")) if ev.spike else math.nan
    why = (f"the step before the collapse was {jump:.0f}× the usual size; a tenth of the "
           "learning rate keeps steps in range" if ev.spike else
           "a smaller learning rate slows the drift of the outputs towards one end")
    if t.lr_schedule:
        why += " (the schedule's values are scaled too)"
    scored.append((90 if ev.spike or ev.exploded else 60,
                   f"Lower the learning rate to {changes['train.learning_rate']:g}", why, changes))

    if t.clipnorm == 0:
        scored.append((85 if ev.spike else 40, "Clip the gradient norm to 1.0",
                       "clipping caps the size of any single update, so one bad batch cannot "
                       "throw the weights far out", {"train.clipnorm": 1.0}))
    if ev.tiny_smooth:
        pair = "bce+jaccard" if t.loss == "jaccard" else "bce+dice"
        scored.append((80 if ev.gradient_dead else 50,
                       f"Use loss {pair} with smooth 1.0",
                       f"smooth {t.jaccard_smooth:g} lets the loss lock at 1.0 once the predictions "
                       "reach 0; a BCE term acts on the logits and keeps a gradient even when "
                       "the sigmoid saturates",
                       {"train.loss": pair, "train.jaccard_smooth": 1.0}))
    if not cfg.model.batch_norm:
        scored.append((95 if ev.dead_units else 55 if ev.spike or ev.exploded else 45,
                       "Turn on batch normalisation",
                       "batch norm keeps each layer's activations in range, so units neither die "
                       "nor blow up after a large update", {"model.batch_norm": True}))
    if t.optimizer == "sgd":
        scored.append((50, "Use Adam at learning rate 0.001",
                       "Adam scales each weight's step by its own gradient history, so one "
                       "large gradient does not become one huge update",
                       {"train.optimizer": "adam", "train.learning_rate": 0.001}))
    if cfg.monitor.policy != "rollback":
        factor = cfg.monitor.rollback_lr_factor
        scored.append((20, "Roll back automatically on collapse",
                       f"Tilewatch restores the last healthy step and continues at {factor:g}× "
                       "the learning rate instead of training a constant",
                       {"monitor.policy": "rollback"}))
    scored.sort(key=lambda item: -item[0])
    return tuple(Remedy(rank, title, why, changes)
                 for rank, (_, title, why, changes) in enumerate(scored, start=1))


def diagnose(
    finding: SaturationFinding,
    *,
    cfg: Config,
    rows: Sequence[Mapping[str, float]] = (),
    warnings: Sequence[WarningFinding] = (),
) -> Diagnosis:
    """Explain a collapse from its measured signals and rank the fixes.

    Args:
        finding: the saturation the detector reported.
        cfg: the configuration of the run (the remedies are changes to it).
        rows: optional steps.csv rows; used only for numbers the finding lacks.
        warnings: the warnings raised so far; the first one at or before the
            onset is named in the text.

    Returns:
        The :class:`Diagnosis`: summary line, paragraph, ranked remedies.
    """
    s = _fill_from_rows(finding, rows)
    ev = _evidence(s, cfg)
    softmax = finding.kind == "constant_class"
    sentences = [
        _trigger_sentence(finding, s, ev),
        _pinned_sentence(finding, s, ev),
        _logit_sentence(s, ev, softmax=softmax),
        _gradient_sentence(finding, s, ev, cfg, softmax=softmax),
    ]
    early = [w for w in warnings if w.step <= finding.onset_step]
    if early:
        first = min(early, key=lambda w: w.step)
        sentences.append(f"The first warning came at step {first.step}: {first.kind.replace('_', ' ')}.")
    sentences.append(f"It was confirmed at step {finding.step} (epoch {finding.epoch}), "
                     f"{finding.step - finding.onset_step} steps after the onset.")

    what = {"all_background": "all background", "all_foreground": "all foreground",
            "constant_class": f"a constant class ({int(_num(s.get('dominant_class', -1)))})"}[finding.kind]
    cause = {"update": "after an update spike", "grad": "after a gradient spike"}.get(ev.spike, "after a gradual drift")
    fate = "cannot recover by itself" if ev.gradient_dead else "gradient still alive"
    summary = (f"Outputs collapsed to {what} at step {finding.onset_step} "
               f"(epoch {finding.onset_epoch}), {cause}; {fate}.")
    return Diagnosis(summary=summary, text=" ".join(sentences),
                     remedies=_remedies(finding, s, ev, cfg))
