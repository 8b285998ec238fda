"""The GUI's picture of one run, fed live by events or at once by ``read_run``.

Both paths go through the same methods, so a reopened run looks exactly as it
did live. No widgets here: the views read this object on their refresh timer.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Signal

from core.events import EpochEnd, Event, RunStarted, Saturation, StepsLogged

__all__ = ["ColumnBuffer", "RunState", "Snapshot"]

_EPOCH_FILE = re.compile(r"^epoch-(\d{4,})\.tif$")
_STEP_FILE = re.compile(r"^step-(\d{7,})\.tif$")


class ColumnBuffer:
    """Growable column-wise float64 arrays (amortised O(1) appends)."""

    def __init__(self) -> None:
        self._cols: dict[str, np.ndarray] = {}
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def columns(self) -> list[str]:
        return list(self._cols)

    def extend_rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        keys = {k for r in rows for k in r}
        self._reserve(self._n + len(rows), keys)
        for name, arr in self._cols.items():
            arr[self._n : self._n + len(rows)] = [_num(r.get(name)) for r in rows]
        self._n += len(rows)

    def extend_columns(self, cols: Mapping[str, np.ndarray]) -> None:
        n = max((len(v) for v in cols.values()), default=0)
        if not n:
            return
        self._reserve(self._n + n, set(cols))
        for name, arr in self._cols.items():
            values = cols.get(name)
            arr[self._n : self._n + n] = np.nan if values is None else values
        self._n += n

    def _reserve(self, size: int, keys: set[str]) -> None:
        cap = len(next(iter(self._cols.values()))) if self._cols else 0
        if size > cap:
            cap = max(size, 2 * cap, 1024)
            for name in list(self._cols):
                grown = np.full(cap, np.nan)
                grown[: self._n] = self._cols[name][: self._n]
                self._cols[name] = grown
        for key in keys - set(self._cols):
            self._cols[key] = np.full(cap, np.nan)

    def get(self, name: str) -> np.ndarray:
        arr = self._cols.get(name)
        return np.full(self._n, np.nan) if arr is None else arr[: self._n]


def _num(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


class Snapshot:
    """One saved probe prediction: after an epoch, or at a detection step."""

    def __init__(self, path: Path, kind: str, index: int, step: float) -> None:
        self.path, self.kind, self.index, self.step = path, kind, index, step

    @property
    def label(self) -> str:
        return f"epoch {self.index}" if self.kind == "epoch" else f"step {self.index} (at detection)"

    def __repr__(self) -> str:
        return f"Snapshot({self.label})"


class RunState(QObject):
    """Steps, history and events of the run being shown, plus its probe predictions."""

    changed = Signal()  # anything new (coalesced by the views' timers)
    event_added = Signal(object)  # every non-steps event, in order
    snapshots_changed = Signal()
    reset = Signal()

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.clear()

    def clear(self, run_dir: Path | None = None) -> None:
        self.run_dir = run_dir
        self.info: dict[str, Any] = {}
        self.config: Mapping[str, Any] = {}
        self.steps = ColumnBuffer()
        self.history = ColumnBuffer()
        self.epoch_end_step: dict[int, float] = {}
        self.events: list[Event] = []
        self.snapshots: list[Snapshot] = []
        self.probe: dict[str, list[str]] = {}
        self.status = "idle"
        self.started_at: float | None = None
        self.version = 0  # bumped on every change; views redraw when it moved
        if hasattr(self, "reset"):
            self.reset.emit()

    # -- feeding ------------------------------------------------------------------
    def add_event(self, event: Event) -> None:
        """Take one live event (from the Trainer's listener, via the GUI thread)."""
        self.version += 1
        if isinstance(event, StepsLogged):
            self.steps.extend_rows(event.rows)
            self.changed.emit()
            return
        self.events.append(event)
        if isinstance(event, RunStarted):
            self.config = event.config
            self.status = "running"
            self.started_at = event.time
        elif isinstance(event, EpochEnd):
            self.history.extend_rows([{"epoch": event.epoch, **dict(event.metrics)}])
            self.epoch_end_step[int(event.epoch)] = float(event.step)
            self.rescan_snapshots()
        elif isinstance(event, Saturation):
            self.rescan_snapshots()
        elif event.type == "run_finished":
            self.status = str(getattr(event, "status", "finished"))
            self.rescan_snapshots()
        self.event_added.emit(event)
        self.changed.emit()

    def load_record(self, record: Any) -> None:
        """Show a run read by ``core.runstore.read_run`` exactly as it looked live."""
        self.clear(Path(record.path))
        self.info = dict(record.info)
        self.config = self.info.get("config", {})
        self.status = str(self.info.get("status", "unknown"))
        self.steps.extend_columns(record.steps)
        self.history.extend_columns(record.history)
        steps, epochs = self.steps.get("step"), self.steps.get("epoch")
        for e, s in zip(epochs, steps):
            if np.isfinite(e):
                self.epoch_end_step[int(e)] = max(self.epoch_end_step.get(int(e), -1.0), float(s))
        for event in record.events:
            self.events.append(event)
            if isinstance(event, EpochEnd):
                self.epoch_end_step[int(event.epoch)] = float(event.step)
            self.event_added.emit(event)
        self.rescan_snapshots()
        self.version += 1
        self.changed.emit()

    def rescan_snapshots(self) -> None:
        """List RUN/predictions (cheap: file names only) and read probe.json once."""
        if self.run_dir is None:
            return
        pred_dir = self.run_dir / "predictions"
        if not pred_dir.is_dir():
            return
        found: list[Snapshot] = []
        for p in pred_dir.iterdir():
            if m := _EPOCH_FILE.match(p.name):
                epoch = int(m.group(1))
                found.append(Snapshot(p, "epoch", epoch, self.epoch_end_step.get(epoch, 1e18) + 0.5))
            elif m := _STEP_FILE.match(p.name):
                found.append(Snapshot(p, "step", int(m.group(1)), float(m.group(1))))
        found.sort(key=lambda s: (s.step, s.kind))
        if not self.probe and (pred_dir / "probe.json").is_file():
            try:
                self.probe = json.loads((pred_dir / "probe.json").read_text(encoding="utf-8"))
            except (OSError, ValueError):
                self.probe = {}
        if [s.path for s in found] != [s.path for s in self.snapshots]:
            self.snapshots = found
            self.snapshots_changed.emit()

    # -- questions the views ask ---------------------------------------------------
    def saturation(self) -> Saturation | None:
        for e in self.events:
            if isinstance(e, Saturation):
                return e
        return None

    def epoch_of_step(self, step: float) -> int:
        for epoch in sorted(self.epoch_end_step):
            if step <= self.epoch_end_step[epoch]:
                return epoch
        return max(self.epoch_end_step, default=0) + 1

    def before_after(self) -> tuple[Snapshot | None, Snapshot | None]:
        """The last healthy epoch's prediction and the first collapsed one."""
        sat = self.saturation()
        if sat is None or not self.snapshots:
            return None, None
        onset = float(sat.onset_step)
        before = [s for s in self.snapshots if s.kind == "epoch" and s.step < onset]
        after = [s for s in self.snapshots if s.step >= onset]
        after.sort(key=lambda s: (s.kind != "step", s.step))  # the detection snapshot first
        return (before[-1] if before else None), (after[0] if after else None)

    def snapshots_around(self, step: float) -> tuple[Snapshot | None, Snapshot | None]:
        before = [s for s in self.snapshots if s.step < step]
        after = [s for s in self.snapshots if s.step >= step]
        return (before[-1] if before else None), (after[0] if after else None)

    def elapsed(self) -> float:
        return time.time() - self.started_at if self.started_at else 0.0
