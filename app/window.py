"""The main window: set-up on the left, live plots in the centre, events and
the prediction inspector around them.

The window is a view: it starts a run through :class:`~app.worker.RunController`,
feeds the Trainer's events into a :class:`~app.runstate.RunState`, and reads
run directories with ``core.runstore.read_run``. Plots redraw from one
throttled timer (20 Hz), never once per event.
"""

from __future__ import annotations

import datetime as _dt
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from platformdirs import user_data_dir
from PySide6.QtCore import QElapsedTimer, QEventLoop, QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QAction, QDesktopServices, QIcon, QKeySequence
from PySide6.QtWidgets import (
    QCheckBox,
    QDockWidget,
    QFileDialog,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from app import APP_NAME
from app.config_panel import ConfigPanel
from app.data_panel import DataPanel, local_dir_from_mime
from app.events_view import EventPanel
from app.inspector import Inspector
from app.plots import LossPanel, LossPlot, SignalPlot, export_plot
from app.resources import icon_path
from app.runstate import RunState
from app.worker import DeviceProbe, RunController
from core.events import ErrorEvent

__all__ = ["MainWindow", "default_workspace", "format_duration"]

log = logging.getLogger(__name__)
REFRESH_MS = 50  # 20 Hz at most
# While training, the plots repaint at most this often (4 Hz is plenty for a loss
# curve): a repaint is Python (pyqtgraph) holding the GIL while TensorFlow keeps the
# cores busy, and the event loop waits for it (docs/BENCHMARKS.md, "Desktop app").
PLOT_MIN_INTERVAL_MS = 250
PROGRESS_MIN_INTERVAL_MS = 1000  # the elapsed time ticks on even when no step arrived


def default_workspace() -> Path:
    return Path(user_data_dir(APP_NAME)) / "runs"


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "—"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def describe_device_text(info: Mapping[str, Any]) -> str:
    """The device indicator's text: GPU name and memory, or plainly the CPU and why."""
    if info.get("kind") == "gpu":
        mem = info.get("memory_mb")
        mem_text = f", {mem / 1024:.1f} GB" if mem else ""
        mp = "mixed precision available" if info.get("mixed_precision_available") else "no mixed precision"
        return f"<b style='color:#2a7a2a'>GPU</b> — {info.get('name', '')}{mem_text} · {mp}"
    if info.get("kind") == "cpu":
        reason = info.get("reason") or "no GPU found"
        return f"<b style='color:#8a4b00'>CPU</b> — no GPU found ({reason}) · mixed precision not available"
    return f"<span style='color:#666'>{info.get('reason', 'checking the device…')}</span>"


class MainWindow(QMainWindow):
    """Tilewatch's main window."""

    runFinished = Signal(str)  # the final status ("failed" when the worker failed)

    def __init__(self, *, workspace: Path | None = None, probe_device: bool = True) -> None:
        super().__init__()
        self.setObjectName("tilewatchMainWindow")
        self.setWindowTitle("Tilewatch")
        icon = icon_path()
        if icon is not None:
            self.setWindowIcon(QIcon(str(icon)))
        self.setAcceptDrops(True)
        self.resize(1600, 1000)
        settings = QSettings()
        self.workspace = Path(workspace or settings.value("workspace", "") or default_workspace())
        self.state = RunState(self)
        self.controller = RunController(self)
        self.next_run_dir: Path | None = None  # --run-dir, used by the next Start
        self.callbacks_factory: Callable[[], Sequence[Any]] | None = None  # tests inject Keras callbacks
        self.last_status: str | None = None
        self.last_error: str | None = None
        self.device_info: dict[str, Any] | None = None
        self._cfg_for_progress: Any = None

        # -- centre: loss over signals ---------------------------------------------------
        self.loss_plot = LossPlot(self.state)
        self.signal_plot = SignalPlot(self.state)
        self.signal_plot.link_x(self.loss_plot.getPlotItem())
        self.log_check = QCheckBox("log scale", objectName="logScaleCheck")
        self.log_check.toggled.connect(self.loss_plot.set_log_scale)
        self.run_title = QLabel("No run yet — choose data and press Start, or File → Open run…", objectName="runTitle")
        self.run_title.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        fit_btn = QPushButton("Fit view", objectName="fitViewButton")
        fit_btn.setToolTip("Show all the data again and follow new steps (after zooming or panning)")
        fit_btn.clicked.connect(self.fit_plots)
        plot_bar = QHBoxLayout()
        plot_bar.addWidget(self.run_title, 1)
        plot_bar.addWidget(self.log_check)
        plot_bar.addWidget(fit_btn)
        top = QWidget()
        top_layout = QVBoxLayout(top)
        top_layout.setContentsMargins(4, 4, 4, 0)
        top_layout.addLayout(plot_bar)
        self.loss_panel = LossPanel(self.loss_plot)
        top_layout.addWidget(self.loss_panel, 1)
        # drag the handle to share the height between the loss and the signals
        self.plot_splitter = QSplitter(Qt.Orientation.Vertical, objectName="plotSplitter")
        self.plot_splitter.addWidget(top)
        self.plot_splitter.addWidget(self.signal_plot)
        self.plot_splitter.setChildrenCollapsible(False)
        self.plot_splitter.setHandleWidth(7)
        self.plot_splitter.setStretchFactor(0, 1)
        self.plot_splitter.setStretchFactor(1, 1)
        self.plot_splitter.setSizes([440, 560])
        top.setMinimumHeight(180)
        self.signal_plot.setMinimumHeight(240)
        centre = self.plot_splitter
        self.setCentralWidget(centre)

        # -- left: data, config, device, controls ----------------------------------------------
        self.data_panel = DataPanel()
        self.config_panel = ConfigPanel()
        config_scroll = QScrollArea()
        config_scroll.setWidgetResizable(True)
        config_scroll.setWidget(self.config_panel)
        self.setup_tabs = QTabWidget(objectName="setupTabs")
        self.setup_tabs.addTab(self.data_panel, "Data")
        self.setup_tabs.addTab(config_scroll, "Configuration")
        self.device_label = QLabel(describe_device_text({}), objectName="deviceLabel")
        self.device_label.setWordWrap(True)
        self.device_label.setToolTip("Where training runs. GPU support: install the 'gpu' extra (pip install 'tilewatch[gpu]').")
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(4, 4, 4, 4)
        left_layout.addWidget(self.setup_tabs, 1)
        left_layout.addWidget(self._build_controls())
        self.left_dock = self._dock("Set-up", left, Qt.DockWidgetArea.LeftDockWidgetArea, "setupDock")
        self.left_dock.setMinimumWidth(430)

        # -- right: events; bottom: inspector ----------------------------------------------------
        self.event_panel = EventPanel(self.state)
        self.events_dock = self._dock("Events", self.event_panel, Qt.DockWidgetArea.RightDockWidgetArea, "eventsDock")
        self.events_dock.setMinimumWidth(380)
        # the set-up column runs the full height; the inspector spans the plots and the events
        self.setCorner(Qt.Corner.BottomLeftCorner, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.inspector = Inspector(self.state)
        self.inspector_dock = self._dock("Predictions", self.inspector, Qt.DockWidgetArea.BottomDockWidgetArea, "inspectorDock")
        self.resizeDocks([self.inspector_dock], [440], Qt.Orientation.Vertical)
        self.resizeDocks([self.left_dock, self.events_dock], [450, 400], Qt.Orientation.Horizontal)

        self._build_menus()
        self.statusBar().showMessage("Ready")

        # -- wiring -------------------------------------------------------------------------------
        self.controller.event.connect(self._on_event)
        self.controller.failed.connect(self._on_failed)
        self.controller.finished.connect(self._on_finished)
        self.data_panel.datasetChanged.connect(self._dataset_changed)
        self.data_panel.bandsChanged.connect(self.inspector.set_bands)
        self.config_panel.configChanged.connect(self._update_buttons)
        self.loss_plot.markerClicked.connect(self.inspector.jump_to_step)
        self.event_panel.applyRemedy.connect(self.apply_remedy)
        self.event_panel.eventSelected.connect(self._event_selected)
        self._clock = QElapsedTimer()
        self._clock.start()
        self._last_plot_ms = self._last_progress_ms = -10**9
        self._progress_version = -1
        self._signals_due = False
        self.timer = QTimer(self, interval=REFRESH_MS)
        self.timer.timeout.connect(self.refresh)
        self.timer.start()
        self._update_buttons()
        self._probe_device = probe_device
        self.device_probe: DeviceProbe | None = None

    def _start_device_probe(self) -> None:
        """Describe the device: this imports TensorFlow, so only once the window is up."""
        if self._probe_device and self.device_probe is None:
            self.device_probe = DeviceProbe(self)
            self.device_probe.described.connect(self.set_device)
            self.device_probe.start()

    def showEvent(self, event) -> None:  # noqa: N802 - Qt override
        super().showEvent(event)
        if self.device_probe is None:
            # after the first paint: the window must appear before TensorFlow starts importing
            QTimer.singleShot(250, self._start_device_probe)
        if not getattr(self, "_docks_sized", False):
            # docks can only be sized once the window has its size: give the inspector ~1/3
            self._docks_sized = True
            QTimer.singleShot(0, lambda: self.resizeDocks(
                [self.inspector_dock], [int(self.height() * 0.34)], Qt.Orientation.Vertical))

    def _dock(self, title: str, widget: QWidget, area, name: str) -> QDockWidget:
        dock = QDockWidget(title, self, objectName=name)
        dock.setWidget(widget)
        dock.setFeatures(QDockWidget.DockWidgetFeature.DockWidgetMovable | QDockWidget.DockWidgetFeature.DockWidgetFloatable)
        self.addDockWidget(area, dock)
        return dock

    def _build_controls(self) -> QWidget:
        box = QGroupBox("Run", objectName="runControls")
        self.start_button = QPushButton("▶  Start", objectName="startButton")
        self.start_button.setToolTip("Train with this data and configuration (Ctrl+R)")
        self.start_button.setShortcut(QKeySequence("Ctrl+R"))
        self.pause_button = QPushButton("❚❚  Pause", objectName="pauseButton")
        self.pause_button.setToolTip("Pause at the next batch boundary; press again to resume")
        self.stop_button = QPushButton("■  Stop", objectName="stopButton")
        self.stop_button.setToolTip("Stop at the next batch boundary; the run stays readable")
        self.start_button.clicked.connect(lambda: self.start_run())
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_run)
        self.progress = QProgressBar(objectName="runProgress")
        self.progress.setTextVisible(True)
        self.progress.setFormat("idle")
        self.progress_label = QLabel(" ", objectName="progressLabel")
        self.status_label = QLabel(" ", objectName="runStatusLabel")
        self.status_label.setWordWrap(True)
        self.run_dir_label = QLabel("—", objectName="runDirLabel")
        self.run_dir_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.run_dir_label.setWordWrap(True)
        self.workspace_label = QLabel(str(self.workspace), objectName="workspaceLabel")
        self.workspace_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.workspace_label.setWordWrap(True)
        ws_button = QPushButton("Change…", objectName="workspaceButton")
        ws_button.setToolTip("Folder where new runs are written")
        ws_button.clicked.connect(self._choose_workspace)
        grid = QGridLayout(box)
        buttons = QHBoxLayout()
        for b in (self.start_button, self.pause_button, self.stop_button):
            buttons.addWidget(b)
        grid.addLayout(buttons, 0, 0, 1, 3)
        grid.addWidget(self.progress, 1, 0, 1, 3)
        grid.addWidget(self.progress_label, 2, 0, 1, 3)
        grid.addWidget(self.status_label, 3, 0, 1, 3)
        grid.addWidget(QLabel("Device:"), 4, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.device_label, 4, 1, 1, 2)
        grid.addWidget(QLabel("Run:"), 5, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.run_dir_label, 5, 1, 1, 2)
        grid.addWidget(QLabel("Workspace:"), 6, 0, Qt.AlignmentFlag.AlignTop)
        grid.addWidget(self.workspace_label, 6, 1)
        grid.addWidget(ws_button, 6, 2, Qt.AlignmentFlag.AlignTop)
        grid.setColumnStretch(1, 1)
        return box

    def _build_menus(self) -> None:
        m = self.menuBar().addMenu("&File")
        self._action(m, "Open data folder…", self.data_panel._browse, "Ctrl+D")
        self._action(m, "Open run…", self._open_run_dialog, "Ctrl+O")
        self._action(m, "Overlay another run's loss…", self._overlay_dialog)
        self._action(m, "Clear overlays", self.loss_plot.clear_overlays)
        m.addSeparator()
        self._action(m, "Load configuration…", self.config_panel._load_dialog)
        self._action(m, "Save configuration…", self.config_panel._save_dialog, "Ctrl+S")
        self._action(m, "Export plots (PNG/SVG)…", self._export_dialog, "Ctrl+E")
        m.addSeparator()
        self._action(m, "Quit", self.close, "Ctrl+Q")
        v = self.menuBar().addMenu("&View")
        for dock in (self.left_dock, self.events_dock, self.inspector_dock):
            v.addAction(dock.toggleViewAction())
        self._action(v, "Before / after of the collapse", lambda: self.inspector.show_before_after())
        h = self.menuBar().addMenu("&Help")
        self._action(h, "Show log folder", self.show_log_folder)
        self._action(h, "About Tilewatch", self._about)

    def _action(self, menu, text: str, slot, shortcut: str | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(lambda *_: slot())
        menu.addAction(action)
        return action

    # -- device -------------------------------------------------------------------------
    def set_device(self, info: dict) -> None:
        self.device_info = dict(info)
        self.device_label.setText(describe_device_text(info))
        self.config_panel.set_context(device=info)

    # -- data --------------------------------------------------------------------------
    def _dataset_changed(self, info: Any) -> None:
        if info is not None:
            self.config_panel.set_context(band_ranges=info.band_ranges)
            self.inspector.set_bands(self.data_panel.bands())
        self._update_buttons()

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if local_dir_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        from core.runstore import is_run_dir

        folder = local_dir_from_mime(event.mimeData())
        if folder is None:
            return
        event.acceptProposedAction()
        if is_run_dir(folder):
            self.open_run(folder)
        else:
            self.setup_tabs.setCurrentIndex(0)
            self.data_panel.set_folder(folder)

    # -- running -------------------------------------------------------------------------
    def is_running(self) -> bool:
        return self.controller.is_running()

    def _new_run_dir(self) -> Path:
        stem = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        preset = self.config_panel.preset_combo.currentData() or "custom"
        base = self.workspace / f"{stem}-{preset}"
        path, n = base, 1
        while path.exists():
            n += 1
            path = base.with_name(f"{base.name}-{n}")
        return path

    def start_run(self, *, init_checkpoint: Path | None = None, parent_run: dict | None = None) -> bool:
        """Start training with the form's config on the chosen data; False (and why, in the window) if not."""
        if self.is_running():
            return False
        if not self.config_panel.validate():
            self._show_status("Cannot start: fix the configuration fields marked red.", error=True)
            self.setup_tabs.setCurrentIndex(1)
            return False
        data_dir = self.data_panel.folder()
        if data_dir is None or self.data_panel.dataset is None:
            self._show_status("Cannot start: choose a usable tile folder first (Data tab).", error=True)
            self.setup_tabs.setCurrentIndex(0)
            return False
        cfg = self.config_panel.config()
        run_dir = self.next_run_dir or self._new_run_dir()
        self.next_run_dir = None
        self.last_status = self.last_error = None
        self._cfg_for_progress = cfg
        self.state.clear(run_dir)
        self.state.status = "starting"
        self.loss_plot.clear_overlays()
        self.run_dir_label.setText(str(run_dir))
        self.run_title.setText(f"<b>{run_dir.name}</b> — starting (TensorFlow is loading)…")
        self._show_status("Starting…")
        self.progress.setRange(0, 0)  # busy until the first step
        self.progress.setFormat("starting…")
        self.progress_label.setText(" ")
        log.info("starting run %s on %s", run_dir, data_dir)
        self.controller.start(
            cfg,
            data_dir=data_dir,
            run_dir=run_dir,
            init_checkpoint=init_checkpoint,
            parent_run=parent_run,
            callbacks_factory=self.callbacks_factory,
        )
        self._update_buttons()
        return True

    def toggle_pause(self) -> None:
        if not self.is_running():
            return
        if self.controller.paused:
            self.controller.resume()
            self._show_status("Resumed.")
        else:
            self.controller.pause()
            self._show_status("Paused at the next batch boundary. Press Resume to continue.")
        self._update_buttons()

    def stop_run(self) -> None:
        if self.is_running():
            self.controller.stop()
            self._show_status("Stopping at the next batch boundary…")

    def _on_event(self, event: Any) -> None:
        self.state.add_event(event)
        if event.type == "run_started":
            self.set_device(dict(event.device))
            self.run_title.setText(f"<b>{self.state.run_dir.name}</b> — training")
            dev = event.device or {}
            self._show_status(f"Training on {dev.get('name') or dev.get('kind', 'the device')}…")
        elif event.type == "saturation":
            self._show_status(
                f"Outputs saturated at step {event.onset_step}, epoch {event.epoch}: see Events for the diagnosis.",
                error=True,
            )
            self.event_panel.select_saturation()
            QTimer.singleShot(300, self.inspector.show_before_after)

    def _on_failed(self, message: str) -> None:
        self.last_error = message
        log.error("run failed: %s", message)
        if not any(e.type == "error" for e in self.state.events):
            last = self.state.steps.get("step")
            step = int(last[-1]) if len(last) else 0
            self.state.add_event(ErrorEvent(step=step, epoch=max(self.state.epoch_end_step, default=0) + 1, message=message))
        self._show_status(f"The run failed: {message.splitlines()[0] if message else ''}", error=True)

    def _on_finished(self, result: Any) -> None:
        status = str(getattr(result, "status", None) or ("failed" if self.last_error or result is None else "completed"))
        self.last_status = status
        self.state.status = status
        self.progress.setRange(0, max(1, self.progress.maximum()))
        if status == "failed":
            self.progress.setFormat("failed")
        n = len(self.state.steps)
        if n:  # no stale rate or ETA once the run is over
            self.progress_label.setText(f"{n} steps recorded · took {format_duration(self.state.elapsed())}")
        self.state.rescan_snapshots()
        self.state.version += 1
        self.refresh(force=True)
        name = self.state.run_dir.name if self.state.run_dir else "run"
        self.run_title.setText(f"<b>{name}</b> — {status.replace('_', ' ')}")
        if status != "failed":
            self._show_status(f"Run finished: {status.replace('_', ' ')}.", error=status == "collapsed")
        if self.state.saturation() is not None:
            self.event_panel.select_saturation()
            self.inspector.show_before_after()
        self._update_buttons()
        self.runFinished.emit(status)

    def _update_buttons(self) -> None:
        running = self.is_running()
        self.start_button.setEnabled(not running)
        self.pause_button.setEnabled(running)
        self.stop_button.setEnabled(running)
        self.pause_button.setText("▶  Resume" if self.controller.paused else "❚❚  Pause")

    def _show_status(self, text: str, *, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #b00000; font-weight: bold;" if error else "")
        self.statusBar().showMessage(text)

    # -- refresh (20 Hz) ------------------------------------------------------------------------
    def refresh(self, *, force: bool = False) -> None:
        """The throttled timer's slot (20 Hz): redraw what changed.

        While training, the plots repaint at most every PLOT_MIN_INTERVAL_MS, and the
        loss plot and the signal plot on different ticks, so the event loop is never
        blocked by both repaints at once. Idle (or ``force``), both redraw at once.
        """
        now = self._clock.elapsed()
        if force or not self.is_running():
            self.loss_plot.refresh()
            self.signal_plot.refresh()
            self._signals_due = False
        elif self._signals_due:
            self.signal_plot.refresh()
            self._signals_due = False
        elif now - self._last_plot_ms >= PLOT_MIN_INTERVAL_MS and self.state.version != self.loss_plot._version:
            self._last_plot_ms = now
            self.loss_plot.refresh()
            self._signals_due = True  # next tick, a separate paint
        if self.is_running() and (self.state.version != self._progress_version
                                  or now - self._last_progress_ms >= PROGRESS_MIN_INTERVAL_MS):
            self._progress_version, self._last_progress_ms = self.state.version, now
            self._update_progress()

    def fit_plots(self) -> None:
        """Show all the data again and follow it (the "Fit view" button)."""
        self.loss_plot.fit_view()
        self.signal_plot.fit_view()

    def _update_progress(self) -> None:
        cfg, st = self._cfg_for_progress, self.state
        steps, times = st.steps.get("step"), st.steps.get("time")
        if cfg is None or not len(steps):
            return
        step = int(steps[-1])
        epochs = cfg.train.epochs
        spe = cfg.train.steps_per_epoch or (int(st.epoch_end_step[1]) + 1 if 1 in st.epoch_end_step else 0)
        epoch = int(st.steps.get("epoch")[-1]) if len(steps) else 1
        k = min(len(times) - 1, 200)
        rate = (k / (times[-1] - times[-1 - k])) if k > 0 and times[-1] > times[-1 - k] else float("nan")
        if spe:
            total = spe * epochs
            self.progress.setRange(0, total)
            self.progress.setValue(min(step + 1, total))
            eta = (total - step - 1) / rate if rate and math.isfinite(rate) else float("nan")
        else:
            self.progress.setRange(0, epochs)
            self.progress.setValue(len(st.epoch_end_step))
            eta = float("nan")
        self.progress.setFormat(f"epoch {epoch}/{epochs} · step {step + 1}" + (f"/{spe * epochs}" if spe else ""))
        paused = " · paused" if self.controller.paused else ""
        self.progress_label.setText(
            f"{rate:.1f} steps/s · elapsed {format_duration(st.elapsed())} · ETA {format_duration(eta)}{paused}"
            if math.isfinite(rate) else f"elapsed {format_duration(st.elapsed())}{paused}"
        )

    # -- remedies -------------------------------------------------------------------------------
    def ask(self, title: str, text: str) -> bool:
        """A yes/no question; tests replace it."""
        answer = QMessageBox.question(self, title, text, QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No)
        return answer == QMessageBox.StandardButton.Yes

    def healthy_checkpoint(self, saturation: Any) -> Path | None:
        run_dir = self.state.run_dir
        if run_dir is None:
            return None
        onset_epoch = int(saturation.epoch)
        ckpt = run_dir / "checkpoints" / f"epoch-{onset_epoch - 1:04d}.keras"
        return ckpt if onset_epoch > 1 and ckpt.is_file() else None

    def apply_remedy(self, changes: dict, saturation: Any) -> None:
        self.config_panel.apply_changes(changes)
        self.setup_tabs.setCurrentIndex(1)
        text = ", ".join(f"{k} = {v}" for k, v in changes.items())
        if self.is_running():
            self._show_status(f"Applied {text} to the configuration; it takes effect in the next run.")
            return
        ckpt = self.healthy_checkpoint(saturation)
        old_run = self.state.run_dir
        if ckpt is not None:
            question = (f"Applied {text}.\n\nStart a new run from the last healthy checkpoint "
                        f"({ckpt.name}, before the collapse in epoch {saturation.epoch})?")
        else:
            question = f"Applied {text}.\n\nNo checkpoint from before the collapse exists. Start a new run from scratch?"
        if not self.ask("Start a new run?", question):
            self._show_status(f"Applied {text} to the configuration.")
            return
        if self.data_panel.dataset is None:
            data = (self.state.info or {}).get("data_dir")
            if data:
                self.data_panel.set_folder(data)
        parent = {"run": str(old_run), "checkpoint": str(ckpt)} if ckpt is not None and old_run else None
        self.start_run(init_checkpoint=ckpt, parent_run=parent)

    def _event_selected(self, event: Any) -> None:
        if event.type in ("saturation", "rollback", "warning"):
            self.inspector.jump_to_step(float(getattr(event, "onset_step", event.step)))

    # -- past runs ---------------------------------------------------------------------------
    def open_run(self, path: str | Path) -> bool:
        from core.runstore import RunError, read_run

        if self.is_running():
            self._show_status("Stop the current run before opening another.", error=True)
            return False
        try:
            record = read_run(path)
        except RunError as exc:
            self._show_status(str(exc), error=True)
            return False
        self.state.load_record(record)
        self._cfg_for_progress = None
        info = record.info
        status = str(info.get("status", "unknown"))
        self.last_status = status
        parent = info.get("parent")
        parent_text = f" — started from {Path(parent['run']).name} / {Path(parent['checkpoint']).name}" if parent else ""
        self.run_title.setText(f"<b>{record.path.name}</b> — {status.replace('_', ' ')}{parent_text}")
        self.run_dir_label.setText(str(record.path))
        epochs = len(record.history.get("epoch", []))
        self.progress.setRange(0, 1)
        self.progress.setValue(1)
        self.progress.setFormat(f"{status.replace('_', ' ')} · {epochs} epochs")
        steps = record.steps.get("step", np.empty(0))
        self.progress_label.setText(f"{len(steps)} steps recorded")
        self._show_status(f"Opened {record.path}", error=status in ("failed", "collapsed"))
        try:
            data = info.get("data_dir")
            if data and Path(data).is_dir():
                # rescan, so the Data tab and its preview show this run's tiles
                if self.data_panel.folder() != Path(data) or self.data_panel.dataset is None:
                    self.data_panel.set_folder(data, remember=False)
                probe = list(self.state.probe.get("tiles") or []) or list((info.get("split") or {}).get("val") or [])
                if probe:
                    self.data_panel.show_tile(probe[0])
            cfg = info.get("config")
            if cfg:
                from core.config import load_config

                self.config_panel.set_config(load_config(overrides={f"{s}.{k}": v for s, vals in cfg.items() for k, v in vals.items()}))
        except Exception as exc:  # noqa: BLE001 - an old/foreign config must not stop the viewing
            log.warning("cannot show the run's config: %s", exc)
        self.refresh(force=True)
        self.fit_plots()
        if self.state.saturation() is not None:
            self.event_panel.select_saturation()
            self.inspector.show_before_after()
        return True

    def _open_run_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a run", str(self.workspace))
        if path:
            self.open_run(path)

    def overlay_run(self, path: str | Path) -> bool:
        from core.runstore import RunError, read_run

        try:
            record = read_run(path)
        except RunError as exc:
            self._show_status(str(exc), error=True)
            return False
        steps = record.steps
        ends: dict[int, float] = {}
        for e, s in zip(steps.get("epoch", []), steps.get("step", [])):
            if np.isfinite(e):
                ends[int(e)] = max(ends.get(int(e), -1.0), float(s))
        ep = record.history.get("epoch", np.empty(0))
        vx = np.array([ends.get(int(e), np.nan) for e in ep])
        self.loss_plot.add_overlay(record.path.name, steps.get("step", np.empty(0)), steps.get("loss", np.empty(0)), vx, record.history.get("val_loss", np.full(len(ep), np.nan)))
        self._show_status(f"Overlaid {record.path.name}")
        return True

    def _overlay_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Overlay a run's loss", str(self.workspace))
        if path:
            self.overlay_run(path)

    def export_plots(self, path: str | Path) -> list[Path]:
        path = Path(path)
        signal_path = path.with_name(f"{path.stem}-signals{path.suffix}")
        export_plot(self.loss_panel, str(path))  # the plot with its legend row
        export_plot(self.signal_plot, str(signal_path))
        return [path, signal_path]

    def _export_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export plots", "loss.png", "PNG image (*.png);;SVG drawing (*.svg)")
        if path:
            written = self.export_plots(path)
            self._show_status("Exported " + ", ".join(p.name for p in written))

    def _choose_workspace(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Workspace for new runs", str(self.workspace))
        if path:
            self.workspace = Path(path)
            QSettings().setValue("workspace", str(self.workspace))
            self.workspace_label.setText(str(self.workspace))

    def show_log_folder(self) -> None:
        from app.logs import log_dir

        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))
        self._show_status(f"Logs: {folder}")

    def _about(self) -> None:
        from app.logs import log_dir

        QMessageBox.about(
            self, "About Tilewatch",
            "<b>Tilewatch</b> — train U-Nets on multi-channel TIFF tiles and see the moment the "
            f"outputs saturate.<br><br>Workspace: {self.workspace}<br>Logs: {log_dir()}",
        )

    # -- closing ----------------------------------------------------------------------------
    def confirm_close(self) -> bool:
        """Asked when the window closes during a run; tests replace it."""
        return self.ask("Stop the run?", "A run is in progress. Stop it (it stays readable) and close Tilewatch?")

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        if self.is_running():
            if not self.confirm_close():
                event.ignore()
                return
            self.shutdown()
        self.timer.stop()
        self.inspector.shutdown()
        super().closeEvent(event)

    def shutdown(self, timeout_ms: int = 120_000) -> None:
        """Stop a run cleanly (Trainer.stop at a batch boundary) and wait for its thread."""
        if not self.is_running():
            return
        self.controller.stop()
        loop = QEventLoop()
        self.controller.finished.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        if self.is_running():
            loop.exec()
