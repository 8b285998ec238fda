"""The run directory: the durable record of one training run.

Layout (a stable contract, see DESIGN.md)::

    RUN/run.json        metadata, resolved config, split, status, saturation …
    RUN/history.csv     one row per finished epoch
    RUN/steps.csv       one row per training step (the batch's own loss + signals)
    RUN/events.jsonl    one event per line, appended and flushed
    RUN/checkpoints/    epoch-NNNN.keras, last.keras, best.keras
    RUN/predictions/    epoch-NNNN.tif, step-NNNNNNN.tif, probe.json
    RUN/tensorboard/    TensorBoard logs

:class:`RunWriter` is the only writer; every rewrite is atomic (temp file +
rename) and appends are line-at-a-time and flushed, so a crash leaves every
file readable. :func:`read_run` reads a run that may still be being written and
never trips over a half-written last line. This module never imports
TensorFlow or Qt.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import re
import tempfile
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from core.events import Event, event_from_dict

__all__ = [
    "FORMAT_VERSION",
    "RunError",
    "RunWriter",
    "RunRecord",
    "PredictionFile",
    "read_run",
    "read_prediction",
    "is_run_dir",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "RUN_STATUSES",
]

FORMAT_VERSION = 1
RUN_STATUSES = ("running", "completed", "early_stopped", "stopped", "collapsed", "failed")

_EPOCH_RE = re.compile(r"^epoch-(\d{4,})\.tif$")
_STEP_RE = re.compile(r"^step-(\d{7,})\.tif$")


class RunError(ValueError):
    """A folder is not a (readable) Tilewatch run, or cannot hold a new one."""


def is_run_dir(path: str | os.PathLike[str]) -> bool:
    """Return whether ``path`` holds a Tilewatch run (a run.json)."""
    return (Path(path) / "run.json").is_file()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; rename it onto ``path`` if the block succeeds.

    The temporary name keeps ``path``'s suffix (Keras insists on ``.keras``).
    On an exception the temporary file is removed and ``path`` is untouched,
    so a reader never sees a half-written file.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temp file (flushed to disk) and a rename."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` through a temp file and a rename."""
    atomic_write_bytes(path, text.encode("utf-8"))


class RunWriter:
    """Writes one run directory. Thread-safe: every method takes a lock.

    Args:
        run_dir: the folder; created if missing.
        resume: open an existing run to continue it instead of refusing it.

    Raises:
        RunError: ``run_dir`` already holds a run (and ``resume`` is false) or
            is a non-empty folder that is not a run.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, resume: bool = False) -> None:
        self.path = Path(run_dir)
        self._lock = threading.RLock()
        self._info: dict[str, Any] = {}
        self._step_columns: list[str] | None = None
        self._history_columns: list[str] | None = None
        if resume:
            if not is_run_dir(self.path):
                raise RunError(
                    f"{self.path}: not a Tilewatch run (no run.json); "
                    "give the folder of a run made by 'tilewatch-core train'"
                )
            self._info = _read_json(self.path / "run.json")
            self._step_columns = _csv_header(self.path / "steps.csv")
            self._history_columns = _csv_header(self.path / "history.csv")
        else:
            if is_run_dir(self.path):
                raise RunError(
                    f"{self.path}: already holds a run; choose a new --run-dir, "
                    "or continue it with --resume"
                )
            if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
                raise RunError(
                    f"{self.path}: exists and is not an empty folder; choose a new --run-dir"
                )

    # -- layout -------------------------------------------------------------
    @property
    def checkpoints_dir(self) -> Path:
        return self.path / "checkpoints"

    @property
    def predictions_dir(self) -> Path:
        return self.path / "predictions"

    @property
    def tensorboard_dir(self) -> Path:
        return self.path / "tensorboard"

    @property
    def info(self) -> dict[str, Any]:
        """A copy of the current run.json content."""
        with self._lock:
            return json.loads(json.dumps(self._info))

    def create(self, info: Mapping[str, Any]) -> None:
        """Create the folders and write the first run.json."""
        with self._lock:
            for sub in (self.path, self.checkpoints_dir, self.predictions_dir, self.tensorboard_dir):
                sub.mkdir(parents=True, exist_ok=True)
            self._info = {"format_version": FORMAT_VERSION, **dict(info)}
            self._write_info()

    def update(self, **fields: Any) -> None:
        """Merge ``fields`` into run.json and rewrite it atomically."""
        with self._lock:
            self._info.update(fields)
            self._write_info()

    def _write_info(self) -> None:
        atomic_write_text(self.path / "run.json", json.dumps(self._info, indent=2, default=_json_default) + "\n")

    # -- appends ------------------------------------------------------------
    def append_event(self, event: Event) -> None:
        """Append one event to events.jsonl (flushed)."""
        line = json.dumps(event.to_dict(), default=_json_default)
        with self._lock:
            _append_line(self.path / "events.jsonl", line)

    def append_steps(self, rows: Sequence[Mapping[str, Any]]) -> None:
        """Append rows to steps.csv; the first row fixes the columns."""
        if not rows:
            return
        with self._lock:
            self._step_columns = self._append_csv(self.path / "steps.csv", self._step_columns, rows)

    def append_history(self, row: Mapping[str, Any]) -> None:
        """Append one epoch row to history.csv."""
        with self._lock:
            self._history_columns = self._append_csv(
                self.path / "history.csv", self._history_columns, [row]
            )

    @staticmethod
    def _append_csv(
        path: Path, columns: list[str] | None, rows: Sequence[Mapping[str, Any]]
    ) -> list[str]:
        if columns is None:
            columns = list(rows[0].keys())
            _append_line(path, ",".join(columns))
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        for row in rows:
            writer.writerow([_csv_cell(row.get(c, "")) for c in columns])
        _append_text(path, buf.getvalue())
        return columns

    def truncate_after(self, *, step: int, epoch: int) -> None:
        """Drop records past a checkpoint, so a resumed run neither loses nor
        repeats a step: steps.csv rows with ``step >= step``, history rows with
        ``epoch > epoch`` and events with ``step >= step`` (the run_started of
        an earlier session is kept)."""
        with self._lock:
            _filter_csv(self.path / "steps.csv", lambda r: int(float(r["step"])) < step)
            _filter_csv(self.path / "history.csv", lambda r: int(float(r["epoch"])) <= epoch)
            events = self.path / "events.jsonl"
            if events.exists():
                kept = []
                for obj in _read_jsonl(events):
                    if int(obj.get("step", 0)) < step or (
                        obj.get("type") == "run_started" and int(obj.get("step", 0)) <= step
                    ):
                        kept.append(json.dumps(obj))
                atomic_write_text(events, "".join(k + "\n" for k in kept))
            self._step_columns = _csv_header(self.path / "steps.csv")
            self._history_columns = _csv_header(self.path / "history.csv")


# -- reading ---------------------------------------------------------------
@dataclass(frozen=True)
class PredictionFile:
    """One saved probe prediction: after an epoch, or at a detection step."""

    path: Path
    kind: str  # "epoch" | "step"
    index: int  # the epoch (1-based) or the step

    @property
    def label(self) -> str:
        return f"epoch {self.index}" if self.kind == "epoch" else f"step {self.index}"


@dataclass(frozen=True)
class RunRecord:
    """Everything the GUI needs from a run directory.

    ``steps`` and ``history`` are column-wise float arrays keyed by column
    name (NaN where a cell is empty). ``predictions`` are sorted by step
    order: epoch files by epoch, step files placed by their step.
    """

    path: Path
    info: dict[str, Any]
    history: dict[str, np.ndarray]
    steps: dict[str, np.ndarray]
    events: list[Event]
    predictions: list[PredictionFile]
    probe_names: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        return str(self.info.get("status", "unknown"))

    @property
    def saturation(self) -> dict[str, Any] | None:
        return self.info.get("saturation")

    def events_of(self, type_: str) -> list[Event]:
        return [e for e in self.events if e.type == type_]


def read_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read a run directory, finished or still being written.

    A half-written last line of a CSV or of events.jsonl is ignored.

    Raises:
        RunError: the folder holds no run.json, or it is not valid JSON.
    """
    path = Path(run_dir)
    if not is_run_dir(path):
        raise RunError(f"{path}: not a Tilewatch run (no run.json)")
    info = _read_json(path / "run.json")
    events: list[Event] = []
    ev_path = path / "events.jsonl"
    if ev_path.exists():
        for obj in _read_jsonl(ev_path):
            try:
                events.append(event_from_dict(obj))
            except (TypeError, ValueError):
                continue
    pred_dir = path / "predictions"
    preds: list[PredictionFile] = []
    probe_names: list[str] = []
    if pred_dir.is_dir():
        for p in pred_dir.iterdir():
            if m := _EPOCH_RE.match(p.name):
                preds.append(PredictionFile(p, "epoch", int(m.group(1))))
            elif m := _STEP_RE.match(p.name):
                preds.append(PredictionFile(p, "step", int(m.group(1))))
        probe_json = pred_dir / "probe.json"
        if probe_json.exists():
            try:
                probe_names = list(json.loads(probe_json.read_text())["tiles"])
            except (ValueError, KeyError, TypeError):
                probe_names = []
    steps = _read_csv_columns(path / "steps.csv")
    epoch_end_step = _epoch_end_steps(steps)
    preds.sort(key=lambda p: (epoch_end_step.get(p.index, 1e18) if p.kind == "epoch" else p.index, p.kind))
    return RunRecord(
        path=path,
        info=info,
        history=_read_csv_columns(path / "history.csv"),
        steps=steps,
        events=events,
        predictions=preds,
        probe_names=probe_names,
    )


def read_prediction(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a probe prediction file: float32 (N, H, W[, K]) probabilities."""
    import tifffile

    return np.asarray(tifffile.imread(path), dtype=np.float32)


def _epoch_end_steps(steps: Mapping[str, np.ndarray]) -> dict[int, float]:
    if "epoch" not in steps or "step" not in steps or not len(steps["step"]):
        return {}
    out: dict[int, float] = {}
    for e, s in zip(steps["epoch"], steps["step"]):
        if np.isfinite(e):
            out[int(e)] = max(out.get(int(e), -1.0), float(s) + 0.5)
    return out


# -- file helpers ----------------------------------------------------------
def _append_line(path: Path, line: str) -> None:
    _append_text(path, line + "\n")


def _append_text(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()


def _complete_lines(path: Path) -> list[str]:
    """The file's lines, without a trailing line that has no newline yet."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    lines = text.split("\n")
    return lines[:-1]  # last element is "" after a final newline, or a partial line


def _read_jsonl(path: Path) -> Iterable[dict[str, Any]]:
    for line in _complete_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj


def _csv_header(path: Path) -> list[str] | None:
    lines = _complete_lines(path)
    return lines[0].split(",") if lines else None


def _read_csv_columns(path: Path) -> dict[str, np.ndarray]:
    lines = _complete_lines(path)
    if not lines:
        return {}
    header = lines[0].split(",")
    rows = [r for r in csv.reader(lines[1:]) if len(r) == len(header)]
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(header):
        out[name] = np.array([_to_float(r[i]) for r in rows], dtype=np.float64)
    return out


def _filter_csv(path: Path, keep) -> None:
    lines = _complete_lines(path)
    if not lines:
        return
    header = lines[0].split(",")
    kept = [lines[0]]
    for line, row in zip(lines[1:], csv.reader(lines[1:])):
        if len(row) == len(header) and keep(dict(zip(header, row))):
            kept.append(line)
    atomic_write_text(path, "".join(k + "\n" for k in kept))


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if hasattr(value, "item"):  # numpy scalars (np.float64's repr is "np.float64(…)")
        value = value.item()
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise RunError(f"{path}: cannot read run metadata ({exc})") from None
    if not isinstance(data, dict):
        raise RunError(f"{path}: run metadata is not a JSON object")
    return data


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (set, tuple)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
