"""The collapse detector: decides, from per-step signal rows, when the outputs saturated.

A *collapse* (DESIGN.md, "What 'outputs saturated' means") is an output pinned to
one end for (nearly) every pixel **and** disagreeing with the masks **and**
sustained over a short confirmation window. The gradient norm falling by orders
of magnitude against the recent healthy median (exactly 0 once a float32 sigmoid
saturates) is strong supporting evidence: it lets the detector confirm after
``confirm_steps`` steps; without it the streak must last ``confirm_steps_alive``.

Each row is judged on its own as one of

* **evidence** - pinned to one end and wrong: the masks hold foreground (or,
  for all-foreground, background) that the prediction misses;
* **neutral** - pinned, but the batch cannot tell right from wrong (its masks
  are (nearly) empty, or (nearly) all foreground), or a signal is missing;
  neutral rows neither extend nor break a streak;
* **healthy** - anything else (not pinned, or pinned and right).

This keeps silent: a confident healthy model (pinned but right), batches with
truly empty masks, the early all-background phase of a healthy run on sparse
masks and a model that has not learned yet (one class everywhere but not
pinned), and a slow learner. The learning rate is never used as a signal (the
seed collapsed at a constant learning rate), nor is the loss value alone.

The onset is found by looking back over the buffered rows from the confirming
step: the first step of the streak of evidence rows, extended back over the
neutral rows pinned to the same end directly before it. Rows are processed one
at a time, so delivering them in chunks of any size gives the same findings.

This module is pure Python: it must never import TensorFlow, Keras or Qt. A
:class:`CollapseDetector` is not thread-safe: feed it from one thread.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Literal, Union

__all__ = [
    "WarningFinding",
    "SaturationFinding",
    "Finding",
    "SaturationKind",
    "WARNING_KINDS",
    "CollapseDetector",
    "detect",
]

SaturationKind = Literal["all_background", "all_foreground", "constant_class"]

#: The kinds a :class:`WarningFinding` may carry.
WARNING_KINDS = (
    "update_spike",
    "grad_spike",
    "loss_spike",
    "logit_drift",
    "spread_collapse",
    "input_not_normalised",
)

_ACTIVATIONS = ("sigmoid", "softmax")


@dataclass(frozen=True)
class WarningFinding:
    """An early sign of trouble at ``step``; ``message`` says it with the real numbers."""

    step: int
    epoch: int
    kind: str
    signals: dict[str, float]
    message: str


@dataclass(frozen=True)
class SaturationFinding:
    """A confirmed collapse.

    ``onset_step``/``onset_epoch`` are the first collapsed step and its
    (1-based) epoch; ``step``/``epoch`` the step at which it was confirmed.
    ``signals`` holds the measured before/at/after numbers the diagnosis needs
    (see :meth:`CollapseDetector._summarise` for the keys).
    """

    onset_step: int
    onset_epoch: int
    step: int
    epoch: int
    kind: SaturationKind
    signals: dict[str, float] = field(default_factory=dict)


Finding = Union[WarningFinding, SaturationFinding]

_EVIDENCE = "evidence"
_NEUTRAL = "neutral"
_HEALTHY = "healthy"


@dataclass
class _Judged:
    """One buffered row with the verdict the detector gave it."""

    row: dict[str, float]
    step: int
    epoch: int
    verdict: str
    kind: str | None  # the end it is pinned to, for evidence and neutral rows
    label: int = -1  # softmax: the dominant class


def _num(row: Mapping[str, float], key: str) -> float:
    """Return ``row[key]`` as a float; NaN when missing or not a number."""
    value = row.get(key)
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _finite(values: Iterable[float]) -> list[float]:
    return [v for v in values if math.isfinite(v)]


def _median(values: Iterable[float]) -> float:
    """Median of the finite values; NaN when there are none."""
    vals = _finite(values)
    return float(median(vals)) if vals else math.nan


def _mean(values: Iterable[float]) -> float:
    vals = _finite(values)
    return sum(vals) / len(vals) if vals else math.nan


def _fmt(value: float) -> str:
    """A number for a message: 3 significant digits, exponent when far from 1."""
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    if 100 <= abs(value) < 1e5:
        return f"{value:.0f}"
    if 1e-3 <= abs(value) < 100:
        return f"{value:.3g}"
    return f"{value:.2e}"


class CollapseDetector:
    """Watches per-step signal rows and reports saturation and early warnings.

    Args:
        activation: the output activation, ``"sigmoid"`` or ``"softmax"``.
        num_outputs: output channels (sigmoid) or classes (softmax).
        confirm_steps: evidence steps needed when the gradient has collapsed.
        confirm_steps_alive: evidence steps needed when the gradient is still
            alive (a pinned, wrong output that may yet recover, e.g. with BCE
            on logits). Must be >= ``confirm_steps``.
        history: rows kept for looking back (onset, before/after numbers).
        pin_frac: share of pixel-outputs pinned at one end that counts as
            "(nearly) every pixel" (0.99: a healthy confident model on masks
            with any foreground has fewer pinned at the *same* end).
        min_mask_frac: a batch is informative only if its masks hold at least
            this share of the pixels the pinned prediction misses
            (foreground for all-background, background for all-foreground);
            below it (truly empty masks) a pinned row is neutral.
        max_recall: sigmoid all-background: the recall at or below which a
            pinned-low row disagrees with the masks.
        grad_drop: the gradient counts as collapsed when its median over the
            streak is at most this fraction of the healthy median (1e-2:
            two orders of magnitude).
        grad_dead_abs: with no healthy baseline yet, a gradient norm at or
            below this counts as collapsed.
        baseline_window: healthy rows whose medians form the baseline.
        min_baseline: healthy rows needed before spike warnings are judged.
        spike_factor: an update ratio or gradient norm this many times its
            recent median is a spike (healthy steps stay within ~3-5x).
        spike_lookback: steps before the onset searched for the spike that
            caused it.
        loss_spike_factor: a batch loss this many times its recent median
            (and beyond 5 robust deviations) is a loss spike.
        logit_drift_abs: a mean logit (softmax: margin) beyond this is drift
            towards one end whatever the history (float32 sigmoid saturates
            near +-17).
        logit_drift_factor: or beyond this many times the recent median of
            ``|logit_mean|`` (and at least ``logit_drift_floor``).
        logit_drift_floor: the smallest ``|logit_mean|`` the relative rule
            may flag.
        spread_collapse_factor: a spatial logit spread below this fraction of
            its recent median is a collapsing spread.
        input_abs_limit: ``|input_mean|`` or ``input_std`` above this means the
            input was not normalised.
        warn_every: a warning kind fires at most once per this many steps.
        rearm_steps: after a reported collapse, this many consecutive healthy
            steps re-arm the detector for a new collapse.

    Raises:
        ValueError: for an unknown activation or inconsistent thresholds.
    """

    def __init__(
        self,
        *,
        activation: str,
        num_outputs: int,
        confirm_steps: int = 5,
        confirm_steps_alive: int = 15,
        history: int = 200,
        pin_frac: float = 0.99,
        min_mask_frac: float = 0.005,
        max_recall: float = 0.05,
        grad_drop: float = 1e-2,
        grad_dead_abs: float = 1e-8,
        baseline_window: int = 50,
        min_baseline: int = 10,
        spike_factor: float = 10.0,
        spike_lookback: int = 10,
        loss_spike_factor: float = 3.0,
        logit_drift_abs: float = 100.0,
        logit_drift_factor: float = 5.0,
        logit_drift_floor: float = 20.0,
        spread_collapse_factor: float = 0.01,
        input_abs_limit: float = 50.0,
        warn_every: int = 100,
        rearm_steps: int = 10,
    ) -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"activation {activation!r} is not supported; valid: {', '.join(_ACTIVATIONS)}"
            )
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be at least 1, not {num_outputs}")
        if confirm_steps < 1 or confirm_steps_alive < confirm_steps:
            raise ValueError(
                "need 1 <= confirm_steps <= confirm_steps_alive, got "
                f"{confirm_steps} and {confirm_steps_alive}"
            )
        if history < confirm_steps_alive + spike_lookback:
            raise ValueError(
                f"history ({history}) must hold at least confirm_steps_alive + spike_lookback "
                f"= {confirm_steps_alive + spike_lookback} rows"
            )
        if not 0.5 < pin_frac <= 1.0:
            raise ValueError(f"pin_frac must be in (0.5, 1], not {pin_frac}")
        self.activation = activation
        self.num_outputs = num_outputs
        self.confirm_steps = confirm_steps
        self.confirm_steps_alive = confirm_steps_alive
        self.history = history
        self.pin_frac = pin_frac
        self.min_mask_frac = min_mask_frac
        self.max_recall = max_recall
        self.grad_drop = grad_drop
        self.grad_dead_abs = grad_dead_abs
        self.baseline_window = baseline_window
        self.min_baseline = min_baseline
        self.spike_factor = spike_factor
        self.spike_lookback = spike_lookback
        self.loss_spike_factor = loss_spike_factor
        self.logit_drift_abs = logit_drift_abs
        self.logit_drift_factor = logit_drift_factor
        self.logit_drift_floor = logit_drift_floor
        self.spread_collapse_factor = spread_collapse_factor
        self.input_abs_limit = input_abs_limit
        self.warn_every = warn_every
        self.rearm_steps = rearm_steps
        self.reset()

    # -- state -------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything (call from the Keras callback's ``on_train_begin``)."""
        self._buffer: deque[_Judged] = deque(maxlen=self.history)
        self._baseline: deque[_Judged] = deque(maxlen=self.baseline_window)
        self._last_warned: dict[str, int] = {}
        self._input_warned = False
        self._clear_streak()
        self._reported = False
        self._healthy_run = 0

    def _clear_streak(self) -> None:
        self._streak_kind: str | None = None
        self._streak_label = -1
        self._streak_evidence: list[_Judged] = []

    def after_rollback(self, *, to_step: int) -> None:
        """Forget the collapse and everything after ``to_step``; keep the healthy baseline.

        The rows after ``to_step`` were undone by the rollback (they include
        the spike and the collapse), so they leave the look-back buffer and the
        baseline; the warning rate limits restart for the new trajectory.
        """
        self._buffer = deque((j for j in self._buffer if j.step <= to_step), maxlen=self.history)
        self._baseline = deque(
            (j for j in self._baseline if j.step <= to_step), maxlen=self.baseline_window
        )
        self._last_warned = {}
        self._clear_streak()
        self._reported = False
        self._healthy_run = 0

    @property
    def collapsed(self) -> bool:
        """True from a reported saturation until it re-arms, rolls back or resets."""
        return self._reported

    # -- the per-row rules -------------------------------------------------

    def _judge(self, row: Mapping[str, float]) -> tuple[str, str | None, int]:
        """Return ``(verdict, kind, label)`` for one row."""
        if self.activation == "softmax":
            pinned = _num(row, "pinned_frac")
            dominant = _num(row, "dominant_frac")
            error = _num(row, "error_frac")
            label = int(_num(row, "dominant_class")) if math.isfinite(_num(row, "dominant_class")) else -1
            if not (math.isfinite(pinned) and math.isfinite(dominant)):
                return _NEUTRAL, None, -1
            if pinned >= self.pin_frac and dominant >= self.pin_frac:
                if not math.isfinite(error):
                    return _NEUTRAL, "constant_class", label
                recall = _num(row, "recall")
                if label == 0 and math.isfinite(recall) and recall > self.max_recall:
                    return _HEALTHY, None, -1  # background nearly everywhere, but it finds the objects
                if error >= self.min_mask_frac:
                    return _EVIDENCE, "constant_class", label
                return _NEUTRAL, "constant_class", label
            return _HEALTHY, None, -1

        low = _num(row, "pinned_low")
        high = _num(row, "pinned_high")
        mask = _num(row, "mask_frac")
        if not (math.isfinite(low) and math.isfinite(high)):
            return _NEUTRAL, None, -1
        if low >= self.pin_frac:
            if not math.isfinite(mask) or mask < self.min_mask_frac:
                return _NEUTRAL, "all_background", 0  # (nearly) empty masks: pinned low is right
            recall = _num(row, "recall")
            if math.isfinite(recall):
                wrong = recall <= self.max_recall
            else:
                wrong = _num(row, "error_frac") >= 0.5 * mask
            return (_EVIDENCE if wrong else _HEALTHY), "all_background", 0
        if high >= self.pin_frac:
            background = 1.0 - mask if math.isfinite(mask) else math.nan
            if not math.isfinite(background) or background < self.min_mask_frac:
                return _NEUTRAL, "all_foreground", 1
            wrong = _num(row, "error_frac") >= 0.5 * background
            return (_EVIDENCE if wrong else _HEALTHY), "all_foreground", 1
        return _HEALTHY, None, -1

    # -- public entry point --------------------------------------------------

    def update(self, rows: Sequence[Mapping[str, float]]) -> list[Finding]:
        """Feed the next rows (in step order) and return what they revealed.

        A saturation is reported once per collapse; warnings are rate-limited
        per kind. The result does not depend on how the rows are chunked.
        """
        findings: list[Finding] = []
        for row in rows:
            findings.extend(self._step(row))
        return findings

    def _step(self, raw: Mapping[str, float]) -> list[Finding]:
        row = {str(k): _num(raw, k) for k in raw}
        step = int(row.get("step", len(self._buffer)))
        epoch_value = row.get("epoch", math.nan)
        epoch = int(epoch_value) if math.isfinite(epoch_value) else 0
        verdict, kind, label = self._judge(row)
        judged = _Judged(row=row, step=step, epoch=epoch, verdict=verdict, kind=kind, label=label)

        findings: list[Finding] = list(self._warnings(judged))
        self._buffer.append(judged)

        if verdict == _HEALTHY:
            self._clear_streak()
            self._baseline.append(judged)
            self._healthy_run += 1
            if self._reported and self._healthy_run >= self.rearm_steps:
                self._reported = False  # recovered: a later collapse is a new one
            return findings
        self._healthy_run = 0
        if verdict == _NEUTRAL:
            return findings

        if self._reported:
            return findings  # already reported; wait for recovery, rollback or reset
        if kind != self._streak_kind or label != self._streak_label:
            self._clear_streak()
            self._streak_kind, self._streak_label = kind, label
        self._streak_evidence.append(judged)
        evidence = len(self._streak_evidence)
        if evidence >= self.confirm_steps_alive or (
            evidence >= self.confirm_steps and self._gradient_dead()
        ):
            findings.append(self._confirm(judged))
            self._reported = True
        return findings

    # -- confirmation ----------------------------------------------------------

    def _baseline_median(self, key: str, *, before: int | None = None) -> float:
        return _median(
            j.row.get(key, math.nan) for j in self._baseline if before is None or j.step < before
        )

    def _streak_grad(self) -> float:
        """Median gradient norm over the streak, leaving out its first step
        (whose gradient was computed on the weights just before the collapse)."""
        rows = self._streak_evidence[1:] or self._streak_evidence
        return _median(j.row.get("grad_norm", math.nan) for j in rows)

    def _gradient_dead(self) -> bool:
        grad = self._streak_grad()
        if not math.isfinite(grad):
            return False
        before = self._baseline_median("grad_norm")
        if math.isfinite(before) and before > 0:
            return grad <= self.grad_drop * before
        return grad <= self.grad_dead_abs

    def _onset_index(self) -> int:
        """Index in the buffer of the collapse's first step, found by looking back."""
        first = self._streak_evidence[0]
        items = list(self._buffer)
        index = next((i for i, j in enumerate(items) if j is first), 0)
        while index > 0:
            prev = items[index - 1]
            if prev.verdict == _NEUTRAL and prev.kind == first.kind and (
                first.kind != "constant_class" or prev.label == first.label
            ):
                index -= 1
            else:
                break
        return index

    def _confirm(self, current: _Judged) -> SaturationFinding:
        items = list(self._buffer)
        onset_index = self._onset_index()
        onset = items[onset_index]
        kind = self._streak_kind
        assert kind is not None
        return SaturationFinding(
            onset_step=onset.step,
            onset_epoch=onset.epoch,
            step=current.step,
            epoch=current.epoch,
            kind=kind,  # type: ignore[arg-type]
            signals=self._summarise(items, onset_index, kind),
        )

    def _summarise(self, items: list[_Judged], onset_index: int, kind: str) -> dict[str, float]:
        """The measured numbers behind a saturation, for the diagnosis.

        Keys: ``*_before`` are medians over the healthy rows before the onset;
        ``*_after`` and the plain names are over the streak's evidence rows
        (medians; ``mask_frac``/``pos_frac``/``error_frac``/``recall`` means;
        ``logit_absmax`` the max). ``update_ratio_peak``/``peak_step`` is the
        largest update ratio from ``spike_lookback`` steps before the onset to
        the onset; ``update_jump`` and ``grad_jump`` are peak / before;
        ``steps_to_pin`` is onset - peak step; ``gradient_dead`` is 1 or 0.
        """
        onset = items[onset_index]
        evidence = self._streak_evidence
        after = evidence[1:] or evidence
        window = [
            j for j in items[: onset_index + 1] if j.step >= onset.step - self.spike_lookback
        ]
        pinned_key = {"all_background": "pinned_low", "all_foreground": "pinned_high"}.get(
            kind, "pinned_frac"
        )

        def ev(key: str) -> list[float]:
            return [j.row.get(key, math.nan) for j in evidence]

        def before(key: str) -> float:
            return self._baseline_median(key, before=onset.step)

        signals: dict[str, float] = {
            "onset_step": float(onset.step),
            "confirm_step": float(evidence[-1].step),
            "evidence_steps": float(len(evidence)),
            "pinned_frac": _median(ev(pinned_key)),
            "pinned_any": _median(ev("pinned_frac")),
            "mask_frac": _mean(ev("mask_frac")),
            "pos_frac": _mean(ev("pos_frac")),
            "error_frac": _mean(ev("error_frac")),
            "recall": _mean(ev("recall")),
            "dominant_frac": _median(ev("dominant_frac")),
            "logit_mean": _median(ev("logit_mean")),
            "logit_spread": _median(ev("logit_spread")),
            "logit_absmax": max(_finite(ev("logit_absmax")), default=math.nan),
            "logit_mean_before": before("logit_mean"),
            "logit_spread_before": before("logit_spread"),
            "grad_norm_before": before("grad_norm"),
            "grad_norm_after": _median(j.row.get("grad_norm", math.nan) for j in after),
            "update_ratio_before": before("update_ratio"),
            "update_ratio_after": _median(j.row.get("update_ratio", math.nan) for j in after),
            "loss_before": before("loss"),
            "loss_after": _median(ev("loss")),
            "lr_before": before("lr"),
            "gradient_dead": 1.0 if self._gradient_dead() else 0.0,
        }
        if kind == "constant_class":
            signals["dominant_class"] = float(self._streak_label)
        for key, prefix in (("update_ratio", "update"), ("grad_norm", "grad")):
            candidates = [j for j in window if math.isfinite(j.row.get(key, math.nan))]
            peak = max(candidates, key=lambda j: j.row[key], default=None)
            base = signals[f"{key}_before"]
            if peak is None:
                continue
            value = peak.row[key]
            name = "update_ratio_peak" if prefix == "update" else "grad_norm_peak"
            signals[name] = value
            signals[f"{prefix}_peak_step"] = float(peak.step)
            signals[f"{prefix}_peak_epoch"] = float(peak.epoch)
            signals[f"{prefix}_jump"] = value / base if math.isfinite(base) and base > 0 else math.nan
            if prefix == "update":
                signals["peak_step"] = float(peak.step)
                signals["lr_at_peak"] = peak.row.get("lr", math.nan)
        if "peak_step" in signals:
            signals["steps_to_pin"] = float(onset.step) - signals["peak_step"]
        return signals

    # -- warnings ----------------------------------------------------------------

    def _may_warn(self, kind: str, step: int) -> bool:
        last = self._last_warned.get(kind)
        return last is None or step - last >= self.warn_every

    def _warnings(self, judged: _Judged) -> Iterable[WarningFinding]:
        row, step, epoch = judged.row, judged.step, judged.epoch
        found: list[WarningFinding] = []

        def warn(kind: str, signals: dict[str, float], message: str) -> None:
            if self._may_warn(kind, step):
                self._last_warned[kind] = step
                found.append(WarningFinding(step, epoch, kind, signals, message))

        mean, std = _num(row, "input_mean"), _num(row, "input_std")
        if not self._input_warned and (
            abs(mean) > self.input_abs_limit or std > self.input_abs_limit
        ):
            self._input_warned = True
            found.append(
                WarningFinding(
                    step,
                    epoch,
                    "input_not_normalised",
                    {"input_mean": mean, "input_std": std},
                    f"The input batch has mean {_fmt(mean)} and std {_fmt(std)}: it is not "
                    "normalised (expected values of order 1). Large inputs make the first "
                    "updates huge; set data.normalize to \"percentile\" or \"zscore\".",
                )
            )
        if self._reported or len(self._baseline) < self.min_baseline:
            return found  # a reported collapse explains the rest; no baseline yet

        for key, kind, label in (
            ("update_ratio", "update_spike", "update/weight ratio"),
            ("grad_norm", "grad_spike", "gradient norm"),
        ):
            value, base = _num(row, key), self._baseline_median(key)
            if math.isfinite(value) and math.isfinite(base) and base > 0:
                if value > self.spike_factor * base:
                    warn(
                        kind,
                        {key: value, f"{key}_median": base, "factor": value / base},
                        f"The {label} jumped to {_fmt(value)} at step {step}, "
                        f"{value / base:.0f}x its recent median of {_fmt(base)}: one step moved "
                        "the weights far more than usual, which is how a collapse starts.",
                    )

        loss = _num(row, "loss")
        losses = _finite(j.row.get("loss", math.nan) for j in self._baseline)
        if math.isfinite(loss) and losses and _num(row, "mask_frac") > 0:
            base = float(median(losses))
            spread = 1.4826 * float(median(abs(v - base) for v in losses))
            if base > 0 and loss > self.loss_spike_factor * base and loss > base + 5 * spread:
                warn(
                    "loss_spike",
                    {"loss": loss, "loss_median": base},
                    f"The batch loss jumped to {_fmt(loss)} at step {step}, "
                    f"{loss / base:.1f}x its recent median of {_fmt(base)}.",
                )

        logit = _num(row, "logit_mean")
        if math.isfinite(logit):
            base = self._baseline_median("logit_mean")
            typical = abs(base) if math.isfinite(base) else math.nan
            relative = math.isfinite(typical) and abs(logit) >= max(
                self.logit_drift_floor, self.logit_drift_factor * typical
            )
            if abs(logit) >= self.logit_drift_abs or relative:
                what = "margin between the top two logits" if self.activation == "softmax" else "output logit"
                warn(
                    "logit_drift",
                    {"logit_mean": logit, "logit_mean_median": base},
                    f"The mean {what} is {_fmt(logit)} at step {step} (recent median "
                    f"{_fmt(base)}): the outputs are being pushed towards one end, where "
                    "a float32 sigmoid or softmax saturates and passes no gradient.",
                )

        spread = _num(row, "logit_spread")
        base = self._baseline_median("logit_spread")
        if (
            math.isfinite(spread)
            and math.isfinite(base)
            and base > 1e-3
            and spread < self.spread_collapse_factor * base
        ):
            warn(
                "spread_collapse",
                {"logit_spread": spread, "logit_spread_median": base},
                f"The spatial spread of the logits fell to {_fmt(spread)} at step {step} "
                f"(recent median {_fmt(base)}): the output barely depends on the input any "
                "more (dead ReLUs or a constant decoder).",
            )
        return found


def detect(
    rows: Sequence[Mapping[str, float]], *, activation: str, num_outputs: int, **options: float
) -> list[Finding]:
    """Run a fresh :class:`CollapseDetector` over all ``rows`` (e.g. a steps.csv).

    ``options`` are the detector's keyword thresholds.
    """
    detector = CollapseDetector(activation=activation, num_outputs=num_outputs, **options)  # type: ignore[arg-type]
    return detector.update(rows)
