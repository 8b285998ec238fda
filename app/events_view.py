"""The event list (``eventList``) and the details of the selected event.

Selecting a saturation shows the full diagnosis and the ranked remedies; each
remedy's Apply button asks the window to fill the config with its changes.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QBrush, QColor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app.runstate import RunState

__all__ = ["EventPanel", "event_summary"]

SHOWN = {"warning", "saturation", "rollback", "early_stop", "stopped", "error", "run_started", "run_finished"}
COLORS = {
    "saturation": "#d62728",
    "error": "#d62728",
    "warning": "#c46200",
    "rollback": "#7b4fa8",
    "early_stop": "#1f77b4",
    "stopped": "#555555",
}
TITLES = {
    "warning": "warning",
    "saturation": "SATURATION",
    "rollback": "rollback",
    "early_stop": "early stop",
    "stopped": "stopped",
    "error": "error",
    "run_started": "run started",
    "run_finished": "run finished",
}


def event_summary(event: Any) -> str:
    """One line in the user's words."""
    t = event.type
    if t == "warning":
        return f"{event.kind}: {event.message}"
    if t == "saturation":
        return (
            f"outputs saturated ({event.kind.replace('_', ' ')}) at step {event.onset_step}, "
            f"epoch {event.epoch}; confirmed at step {event.step}"
        )
    if t == "rollback":
        return f"rolled back to step {event.to_step}; learning rate now {event.new_learning_rate:g}"
    if t == "early_stop":
        return "early stopping: val_loss stopped improving"
    if t == "stopped":
        return "stopped"
    if t == "error":
        return event.message.splitlines()[0] if event.message else "error"
    if t == "run_started":
        dev = event.device or {}
        return f"on {dev.get('name') or dev.get('kind', 'device')}"
    if t == "run_finished":
        return f"status: {event.status}"
    return t


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class EventPanel(QWidget):
    """Event list on top, details (diagnosis, remedies with Apply) below."""

    applyRemedy = Signal(dict, object)  # (changes, the saturation event)
    eventSelected = Signal(object)

    def __init__(self, state: RunState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.tree = QTreeWidget(objectName="eventList")
        self.tree.setAccessibleName("Event list")
        self.tree.setHeaderLabels(["event", "step", "epoch", "time", "what"])
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        self.tree.setUniformRowHeights(True)
        for col, width in enumerate((96, 60, 48, 64)):
            self.tree.setColumnWidth(col, width)
        self.details = QTextBrowser(objectName="eventDetails")
        self.details.setOpenExternalLinks(False)
        self.details.setPlaceholderText("Select an event to see its details.")
        self.remedy_box = QWidget(objectName="remedyBox")
        self.remedy_layout = QVBoxLayout(self.remedy_box)
        self.remedy_layout.setContentsMargins(0, 0, 0, 0)
        remedy_scroll = QScrollArea()
        remedy_scroll.setWidgetResizable(True)
        remedy_scroll.setFrameShape(QFrame.Shape.NoFrame)
        remedy_scroll.setWidget(self.remedy_box)
        lower = QSplitter(Qt.Orientation.Vertical)
        lower.addWidget(self.details)
        lower.addWidget(remedy_scroll)
        lower.setSizes([220, 200])
        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.tree)
        split.addWidget(lower)
        split.setSizes([220, 420])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addWidget(split)
        self.remedy_buttons: list[QPushButton] = []
        self._events: list[Any] = []
        state.event_added.connect(self.add_event)
        state.reset.connect(self.clear)
        self.tree.currentItemChanged.connect(self._selected)

    def clear(self) -> None:
        self.tree.clear()
        self._events.clear()
        self.details.clear()
        self._set_remedies(None)

    def add_event(self, event: Any) -> None:
        if event.type not in SHOWN:
            return
        when = _dt.datetime.fromtimestamp(event.time).strftime("%H:%M:%S") if event.time else ""
        item = QTreeWidgetItem([TITLES.get(event.type, event.type), str(event.step), str(event.epoch), when, event_summary(event)])
        item.setToolTip(4, event_summary(event))
        color = COLORS.get(event.type)
        if color:
            item.setForeground(0, QBrush(QColor(color)))
            if event.type in ("saturation", "error"):
                font = item.font(0)
                font.setBold(True)
                for col in range(5):
                    item.setFont(col, font)
        item.setData(0, Qt.ItemDataRole.UserRole, len(self._events))
        self._events.append(event)
        self.tree.addTopLevelItem(item)
        if event.type in ("saturation", "error") and self.tree.currentItem() is None:
            self.tree.setCurrentItem(item)

    def select_saturation(self) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if self._events[item.data(0, Qt.ItemDataRole.UserRole)].type == "saturation":
                self.tree.setCurrentItem(item)
                return True
        return False

    def _selected(self, item: QTreeWidgetItem | None, _prev=None) -> None:
        if item is None:
            return
        event = self._events[item.data(0, Qt.ItemDataRole.UserRole)]
        self.details.setHtml(self._details_html(event))
        self._set_remedies(event if event.type == "saturation" else None)
        self.eventSelected.emit(event)

    def _details_html(self, event: Any) -> str:
        esc = html.escape
        head = f"<b style='color:{COLORS.get(event.type, '#222')}'>{esc(TITLES.get(event.type, event.type))}</b>"
        where = f"step {event.step}, epoch {event.epoch}"
        parts = [f"<p>{head} &nbsp; <span style='color:#666'>{where}</span></p>"]
        if event.type == "saturation":
            parts.append(f"<p><b>{esc(event_summary(event))}</b></p>")
            parts.append("<p><b>Diagnosis.</b> " + esc(event.diagnosis).replace("\n", "<br>") + "</p>")
        elif event.type == "error":
            parts.append("<pre style='white-space:pre-wrap'>" + esc(event.message) + "</pre>")
        else:
            parts.append(f"<p>{esc(event_summary(event))}</p>")
        signals = getattr(event, "signals", None)
        if isinstance(signals, Mapping) and signals:
            rows = "".join(
                f"<tr><td style='color:#555;padding-right:12px'>{esc(str(k))}</td><td>{esc(_fmt_value(v))}</td></tr>"
                for k, v in signals.items()
            )
            parts.append(f"<p><b>Signals</b></p><table>{rows}</table>")
        return "".join(parts)

    def _set_remedies(self, event: Any) -> None:
        while self.remedy_layout.count():
            w = self.remedy_layout.takeAt(0).widget()
            if w is not None:
                w.deleteLater()
        self.remedy_buttons = []
        if event is None or not event.remedies:
            return
        title = QLabel("<b>Remedies</b> (ranked)")
        self.remedy_layout.addWidget(title)
        for remedy in sorted(event.remedies, key=lambda r: r.get("rank", 99)):
            frame = QFrame(objectName="remedyCard")
            frame.setFrameShape(QFrame.Shape.StyledPanel)
            row = QHBoxLayout(frame)
            changes = dict(remedy.get("changes", {}))
            change_text = ", ".join(f"{k} = {_fmt_value(v)}" for k, v in changes.items()) or "no config change"
            text = QLabel(
                f"<b>{remedy.get('rank', '')}. {html.escape(str(remedy.get('title', '')))}</b><br>"
                f"{html.escape(str(remedy.get('why', '')))}<br>"
                f"<span style='color:#1f5f9f'>{html.escape(change_text)}</span>"
            )
            text.setWordWrap(True)
            row.addWidget(text, 1)
            button = QPushButton("Apply", objectName=f"applyRemedy{remedy.get('rank', '')}")
            button.setToolTip("Fill the configuration with this change; then offer a new run from the last healthy checkpoint")
            button.setEnabled(bool(changes))
            button.clicked.connect(lambda _=False, c=changes, e=event: self.applyRemedy.emit(c, e))
            row.addWidget(button, 0, Qt.AlignmentFlag.AlignTop)
            self.remedy_layout.addWidget(frame)
            self.remedy_buttons.append(button)
        self.remedy_layout.addStretch(1)
