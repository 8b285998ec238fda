"""The events a training run emits, as frozen dataclasses.

Progress leaves the trainer only through these objects: they are passed to the
``listener`` callable and (all but :class:`StepsLogged`) appended, one JSON
object per line, to ``RUN/events.jsonl``. The GUI and user scripts rebuild
them with :func:`event_from_dict`.

Every event has ``type``, ``time`` (unix seconds), ``step`` (0-based count of
training batches run so far, monotonic) and ``epoch`` (1-based, as in Keras'
own log). This module never imports TensorFlow or Qt.
"""

from __future__ import annotations

import dataclasses
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

__all__ = [
    "Event",
    "RunStarted",
    "RunFinished",
    "EpochEnd",
    "WarningEvent",
    "Saturation",
    "Rollback",
    "EarlyStop",
    "Stopped",
    "ErrorEvent",
    "StepsLogged",
    "SATURATION_KINDS",
    "event_from_dict",
    "EVENT_TYPES",
]

#: The kinds a ``saturation`` event may carry.
SATURATION_KINDS = ("all_background", "all_foreground", "constant_class")


def _now() -> float:
    return _time.time()


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event: where in the run it happened, and when."""

    type: ClassVar[str] = "event"
    step: int
    epoch: int
    time: float = field(default_factory=_now)

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON-ready mapping written to events.jsonl."""
        out: dict[str, Any] = {"type": self.type}
        for f in dataclasses.fields(self):
            out[f.name] = _jsonable(getattr(self, f.name))
        return out


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    """The run began (or resumed); ``device`` says where it trains."""

    type: ClassVar[str] = "run_started"
    config: Mapping[str, Any]
    device: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """The run ended; ``status`` is the final run.json status."""

    type: ClassVar[str] = "run_finished"
    status: str


@dataclass(frozen=True, kw_only=True)
class EpochEnd(Event):
    """An epoch finished; ``metrics`` holds the history.csv row's values."""

    type: ClassVar[str] = "epoch_end"
    metrics: Mapping[str, float]


@dataclass(frozen=True, kw_only=True)
class WarningEvent(Event):
    """An early sign of trouble (spike, drift, config pre-flight…)."""

    type: ClassVar[str] = "warning"
    kind: str
    signals: Mapping[str, Any]
    message: str


@dataclass(frozen=True, kw_only=True)
class Saturation(Event):
    """The outputs saturated: ``step`` is when it was confirmed, ``onset_step``
    the first collapsed step, ``epoch`` the epoch the onset belongs to."""

    type: ClassVar[str] = "saturation"
    onset_step: int
    kind: str
    signals: Mapping[str, Any]
    diagnosis: str
    remedies: tuple[Mapping[str, Any], ...] = ()


@dataclass(frozen=True, kw_only=True)
class Rollback(Event):
    """Weights and optimizer state were restored to ``to_step``."""

    type: ClassVar[str] = "rollback"
    to_step: int
    new_learning_rate: float


@dataclass(frozen=True, kw_only=True)
class EarlyStop(Event):
    """EarlyStopping on val_loss ended the run."""

    type: ClassVar[str] = "early_stop"


@dataclass(frozen=True, kw_only=True)
class Stopped(Event):
    """The user (or ``monitor.policy = "stop"``) stopped the run."""

    type: ClassVar[str] = "stopped"


@dataclass(frozen=True, kw_only=True)
class ErrorEvent(Event):
    """The run failed with an exception; ``message`` says what failed."""

    type: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True, kw_only=True)
class StepsLogged(Event):
    """A batch of steps.csv rows, for live plots.

    Listener-only: it is not written to events.jsonl, because steps.csv is
    the record of every step. ``step``/``epoch`` are those of the last row.
    """

    type: ClassVar[str] = "steps"
    rows: tuple[Mapping[str, float], ...]


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls
    for cls in (
        RunStarted,
        RunFinished,
        EpochEnd,
        WarningEvent,
        Saturation,
        Rollback,
        EarlyStop,
        Stopped,
        ErrorEvent,
        StepsLogged,
    )
}


def event_from_dict(data: Mapping[str, Any]) -> Event:
    """Rebuild an event from one events.jsonl object.

    Unknown extra keys are ignored, so newer files stay readable.

    Raises:
        ValueError: if ``type`` is missing or not a known event type.
    """
    kind = data.get("type")
    cls = EVENT_TYPES.get(str(kind))
    if cls is None:
        raise ValueError(
            f"unknown event type {kind!r}; known types: {', '.join(sorted(EVENT_TYPES))}"
        )
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {k: v for k, v in data.items() if k in names}
    if "remedies" in kwargs:
        kwargs["remedies"] = tuple(kwargs["remedies"])
    if "rows" in kwargs:
        kwargs["rows"] = tuple(kwargs["rows"])
    return cls(**kwargs)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value
