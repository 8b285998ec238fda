"""The saturation monitor: the Keras callback that watches for collapse.

:class:`SaturationMonitor` receives the per-step signal rows that the trainer
drains in bulk from :class:`core.signals.SignalModel`, feeds them to the
pure-Python :class:`core.detector.CollapseDetector`, and acts on what it finds:

- ``warning`` events for early signs;
- on a confirmed saturation: a probe snapshot, the diagnosis and remedies
  (:mod:`core.diagnosis`), the ``saturation`` event, and the policy —
  ``mark`` (carry on), ``stop`` (end as ``collapsed``) or ``rollback``
  (restore weights *and* optimizer state of the last healthy step from an
  in-memory snapshot, scale the learning rate, carry on).

Everything happens at a batch boundary, on the thread that runs ``fit``, so a
rollback never races a running step. It never imports Qt.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from core.config import Config
from core.detector import CollapseDetector, SaturationFinding, WarningFinding
from core.diagnosis import diagnose
from core.events import Event, Rollback, Saturation, WarningEvent

__all__ = ["SaturationMonitor", "MonitorHooks"]


@dataclass
class MonitorHooks:
    """What the monitor needs from the run around it (the trainer fills it).

    Attributes:
        emit: record and publish an event.
        snapshot_probes: predict the probe tiles now, into ``step-NNNNNNN.tif``.
        on_saturation: record the saturation in run.json.
        set_collapsed: mark that the run must end with status ``collapsed``.
        scale_learning_rate: multiply the schedule by a factor; returns the new rate.
    """

    emit: Callable[[Event], None]
    snapshot_probes: Callable[[int], None]
    on_saturation: Callable[[SaturationFinding], None]
    set_collapsed: Callable[[], None]
    scale_learning_rate: Callable[[float], float]


class _Snapshots:
    """In-memory copies of weights and optimizer state, every ``every`` steps."""

    def __init__(self, *, every: int, keep: int) -> None:
        self.every = every
        self._items: deque[tuple[int, list[np.ndarray], list[np.ndarray]]] = deque(maxlen=keep)

    def clear(self) -> None:
        self._items.clear()

    def maybe_take(self, step: int, model: keras.Model) -> None:
        if step % self.every:
            return
        weights = [v.numpy().copy() for v in model.variables]
        opt = [v.numpy().copy() for v in model.optimizer.variables]
        self._items.append((step, weights, opt))

    def restore_before(self, step: int, model: keras.Model) -> int | None:
        """Restore the newest snapshot taken at or before ``step``; return its step."""
        for snap_step, weights, opt in reversed(self._items):
            if snap_step <= step:
                for var, value in zip(model.variables, weights):
                    var.assign(value)
                for var, value in zip(model.optimizer.variables, opt):
                    var.assign(value)
                while self._items and self._items[-1][0] > snap_step:
                    self._items.pop()
                return snap_step
        return None


class SaturationMonitor(keras.callbacks.Callback):
    """Detect output saturation from in-step signals and apply the policy.

    Args:
        cfg: the run's configuration (``[monitor]`` and, for the diagnosis,
            the rest).
        activation: ``"sigmoid"`` or ``"softmax"``.
        num_outputs: output channels.
        hooks: see :class:`MonitorHooks`.
        snapshot_every: steps between rollback snapshots (``rollback`` only).

    State is reset in ``on_train_begin``, so an instance can be reused.
    """

    #: Warnings older than this many steps before an onset are not part of its story.
    WARNING_HORIZON = 50

    def __init__(
        self,
        cfg: Config,
        *,
        activation: str,
        num_outputs: int,
        hooks: MonitorHooks,
        snapshot_every: int = 5,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.hooks = hooks
        self.detector = CollapseDetector(activation=activation, num_outputs=num_outputs)
        self.policy = cfg.monitor.policy
        self.snapshots = _Snapshots(every=snapshot_every, keep=12)
        self.rollbacks = 0
        self.saturations: list[SaturationFinding] = []
        self._recent: deque[Mapping[str, float]] = deque(maxlen=400)
        self._warnings: deque[WarningFinding] = deque(maxlen=50)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        self.detector.reset()
        self.snapshots.clear()
        self.rollbacks = 0
        self.saturations = []
        self._recent.clear()
        self._warnings.clear()

    def before_step(self, step: int) -> None:
        """Called by the trainer at each batch boundary, before ``step`` runs."""
        if self.policy == "rollback":
            self.snapshots.maybe_take(step, self.model)

    def observe(self, rows: Sequence[Mapping[str, float]]) -> None:
        """Feed newly drained signal rows; act on what the detector finds."""
        if not rows:
            return
        self._recent.extend(rows)
        for finding in self.detector.update(rows):
            if isinstance(finding, WarningFinding):
                self._warnings.append(finding)
                self.hooks.emit(
                    WarningEvent(
                        step=finding.step,
                        epoch=finding.epoch,
                        kind=finding.kind,
                        signals=dict(finding.signals),
                        message=finding.message,
                    )
                )
            elif isinstance(finding, SaturationFinding):
                self._on_saturation(finding)
                if self.model.stop_training:
                    return

    def _on_saturation(self, finding: SaturationFinding) -> None:
        self.saturations.append(finding)
        # Only the run-up to this collapse explains it: older warnings (before an
        # earlier rollback, say) would point at the wrong cause.
        recent = [w for w in self._warnings if w.step >= finding.onset_step - self.WARNING_HORIZON]
        diagnosis = diagnose(finding, cfg=self.cfg, rows=list(self._recent), warnings=recent)
        self.hooks.snapshot_probes(finding.step)
        self.hooks.on_saturation(finding)
        self.hooks.emit(
            Saturation(
                step=finding.step,
                epoch=finding.onset_epoch,
                onset_step=finding.onset_step,
                kind=finding.kind,
                signals=dict(finding.signals),
                diagnosis=diagnosis.text,
                remedies=tuple(r.to_dict() for r in diagnosis.remedies),
            )
        )
        if self.policy == "stop":
            self._stop_collapsed()
        elif self.policy == "rollback":
            if self.rollbacks >= self.cfg.monitor.max_rollbacks:
                self._stop_collapsed()
                return
            to_step = self.snapshots.restore_before(finding.onset_step, self.model)
            if to_step is None:
                self._stop_collapsed()
                return
            self.rollbacks += 1
            new_lr = self.hooks.scale_learning_rate(self.cfg.monitor.rollback_lr_factor)
            self.detector.after_rollback(to_step=to_step)
            self.hooks.emit(
                Rollback(step=finding.step, epoch=finding.epoch, to_step=to_step, new_learning_rate=new_lr)
            )

    def _stop_collapsed(self) -> None:
        self.hooks.set_collapsed()
        self.model.stop_training = True
