"""Live plots: the loss (``lossPlot``) and the monitor's signals (``signalPlot``).

Both read a :class:`~app.runstate.RunState` from the window's throttled timer
(at most 20 Hz), never once per event. Long curves stay smooth with
pyqtgraph's peak downsampling and clip-to-view.
"""

from __future__ import annotations

import math

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import QGraphicsItem, QLabel, QVBoxLayout, QWidget

from app.runstate import RunState

__all__ = ["LossPanel", "LossPlot", "SignalPlot", "ema", "export_plot", "SATURATION_RED"]

SATURATION_RED = (214, 39, 40)
WARNING_ORANGE = (255, 127, 14)
ROLLBACK_PURPLE = (148, 103, 189)
TRAIN_BLUE = (31, 119, 180)
VAL_ORANGE = (230, 110, 20)
LEFT_AXIS_WIDTH = 62
OVERLAY_COLORS = [(44, 160, 44), (140, 86, 75), (227, 119, 194), (127, 127, 127)]


def ema(values: np.ndarray, weight: float = 0.9) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average; NaNs are skipped."""
    out = np.empty(len(values))
    last, num = 0.0, 0
    for i, v in enumerate(values):
        if math.isfinite(v):
            last = last * weight + (1 - weight) * v
            num += 1
        out[i] = last / (1 - weight**num) if num else math.nan
    return out


class _IncrementalEma:
    """The EMA of a growing column, computed only for the new points."""

    def __init__(self, weight: float = 0.9) -> None:
        self.weight = weight
        self.reset()

    def reset(self) -> None:
        self._last, self._num, self._out = 0.0, 0, np.empty(0)

    def update(self, values: np.ndarray) -> np.ndarray:
        n0 = len(self._out)
        if len(values) < n0:
            self.reset()
            n0 = 0
        new = np.empty(len(values) - n0)
        w = self.weight
        for i, v in enumerate(values[n0:]):
            if math.isfinite(v):
                self._last = self._last * w + (1 - w) * v
                self._num += 1
            new[i] = self._last / (1 - w**self._num) if self._num else math.nan
        self._out = np.concatenate([self._out, new])
        return self._out


_DASH = {None: "━━━", "dash": "╍╍╍", "dot": "┅┅┅"}


def legend_html(entries, title: str = "") -> str:
    """A compact one-line legend (rich text) drawn outside the plot, never over the curves.

    ``entries``: (label, colour, style) with style None (solid), "dash" or "dot".
    It is static text, so it costs nothing when the plot repaints.
    """
    parts = [f"<b>{title}</b>&nbsp;&nbsp;"] if title else []
    for label, color, style in entries:
        r, g, b = color[:3]
        label = label.replace(" ", "&nbsp;")  # an entry never wraps inside itself
        parts.append(f"<span style='color:rgb({r},{g},{b}); font-weight:bold'>{_DASH[style]}</span>&nbsp;{label}")
    return "&nbsp;&nbsp;&nbsp;".join(parts)


def _finite(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ok = np.isfinite(x) & np.isfinite(y)
    return x[ok], y[ok]


def _nice_ceil(x: float) -> float:
    """The next of 1, 2, 5 x 10^k at or above ``x`` (x > 0)."""
    if not math.isfinite(x) or x <= 0:
        return 1.0
    k = 10 ** math.floor(math.log10(x))
    return next(m * k for m in (1, 2, 5, 10) if m * k >= x)


class StickyRange:
    """Auto-range that moves rarely, so the axes keep their cached pictures.

    pyqtgraph's auto-range refits the view to the data on every update; while
    training, every new batch then changes both ranges and every axis regenerates
    its ticks, labels and grid in Python (the bulk of a repaint). Here the x range
    grows to the next 1-2-5 step count and the y range keeps ~10 % headroom and
    refits only when the data leaves it or fills less than half of it. A user who
    zooms or pans takes over (pyqtgraph's ``sigRangeChangedManually``) until
    :meth:`fit` is called ("Fit view").
    """

    def __init__(self, view: pg.ViewBox, *, x: bool = True, y: bool = True) -> None:
        self.view, self.x, self.y = view, x, y
        self.following = True
        self.refits = 0
        view.disableAutoRange()
        view.sigRangeChangedManually.connect(self._user_moved)

    def _user_moved(self, *_):
        self.following = False

    def fit(self) -> None:
        self.following = True

    def update(self, xmax: float, ylo: float, yhi: float, *, live: bool) -> None:
        """Show [0, xmax] x [ylo, yhi] (view coordinates); ``live``: keep headroom, move rarely."""
        if not self.following:
            return
        (x0, x1), (y0, y1) = self.view.viewRange()
        new_x = new_y = None
        if self.x and math.isfinite(xmax):
            want = max(xmax, 1.0)
            if live:
                if want > x1 or x0 > 0 or x0 < -0.02 * x1:
                    top = _nice_ceil(want * 1.1)
                    new_x = (-0.01 * top, top)
            else:
                fit = (-0.015 * want, want * 1.015)  # a little room for the end markers
                if abs(x0 - fit[0]) > 1e-9 or abs(x1 - fit[1]) > 1e-9:
                    new_x = fit
        if self.y and math.isfinite(ylo) and math.isfinite(yhi):
            span = max(yhi - ylo, abs(yhi) * 1e-3, 1e-9)
            pad = 0.08 * span
            if live:
                inside = y0 <= ylo and yhi <= y1
                if not inside or (yhi - ylo) < 0.5 * (y1 - y0):
                    new_y = (ylo - pad, yhi + pad)
            elif abs(y0 - (ylo - pad)) > 1e-12 or abs(y1 - (yhi + pad)) > 1e-12:
                new_y = (ylo - pad, yhi + pad)
        if new_x is None and new_y is None:
            return
        self.refits += 1
        self.view.setRange(xRange=new_x, yRange=new_y, padding=0, update=True, disableAutoRange=True)


def _bounds(*arrays: np.ndarray, log: bool = False) -> tuple[float, float]:
    lo, hi = math.inf, -math.inf
    for a in arrays:
        a = a[np.isfinite(a)]
        if log:
            a = np.log10(a[a > 0])
        if len(a):
            lo, hi = min(lo, float(a.min())), max(hi, float(a.max()))
    return (lo, hi) if lo <= hi else (math.nan, math.nan)


def _style_plot(item: pg.PlotItem, *, left: str, bottom: str | None = "step") -> None:
    item.showGrid(x=True, y=True, alpha=0.15)
    item.setDownsampling(auto=True, mode="peak")
    item.setClipToView(True)
    item.setLabel("left", left)
    if bottom:
        item.setLabel("bottom", bottom)
    item.getViewBox().setMouseMode(pg.ViewBox.RectMode)
    # With the grid on, each axis item covers the whole plot, so every curve update
    # repainted every axis (replaying its ticks, labels and grid in Python). Cached
    # as pixmaps, they are blitted until their range or size changes.
    for name in ("left", "bottom", "right", "top"):
        item.getAxis(name).setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)


class LossPlot(pg.PlotWidget):
    """Per-batch loss (faint) with a smoothed line, per-epoch train/val loss and markers."""

    markerClicked = Signal(float)  # a step: the inspector jumps to before/after it

    def __init__(self, state: RunState, parent=None) -> None:
        super().__init__(parent=parent, background="w")
        self.setObjectName("lossPlot")
        self.setAccessibleName("Loss plot")
        self.state = state
        item = self.getPlotItem()
        _style_plot(item, left="loss")
        # the same fixed width as the signal rows: the x axes line up, and new tick labels never re-layout the plot
        item.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
        self.sticky = StickyRange(item.getViewBox())
        # The legend is a label above the plot (see legend_label), not an item over the curves.
        self.legend_label = QLabel(objectName="lossLegend")
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.legend_label.setWordWrap(True)
        self._legend_base = [
            ("batch loss", (*TRAIN_BLUE, 90), None), ("smoothed", TRAIN_BLUE, None),
            ("train loss / epoch ●", (20, 60, 120), "dash"), ("val loss / epoch ■", VAL_ORANGE, None),
            ("warning ▲", WARNING_ORANGE, None), ("saturation", SATURATION_RED, None),
        ]
        self._legend_extra: list = []
        self._update_legend()
        self.batch_curve = item.plot(
            name="batch loss", pen=pg.mkPen((*TRAIN_BLUE, 60), width=1), skipFiniteCheck=True
        )
        self.smooth_curve = item.plot(name="smoothed", pen=pg.mkPen(TRAIN_BLUE, width=2), skipFiniteCheck=True)
        self.train_curve = item.plot(
            name="train loss / epoch", pen=pg.mkPen((20, 60, 120), width=2, style=pg.QtCore.Qt.PenStyle.DashLine),
            symbol="o", symbolSize=6, symbolBrush=(20, 60, 120), symbolPen=None,
        )
        self.val_curve = item.plot(
            name="val loss / epoch", pen=pg.mkPen(VAL_ORANGE, width=2),
            symbol="s", symbolSize=6, symbolBrush=VAL_ORANGE, symbolPen=None,
        )
        self.warning_marks = pg.ScatterPlotItem(
            symbol="t1", size=11, brush=pg.mkBrush(WARNING_ORANGE), pen=pg.mkPen("k", width=0.5),
            hoverable=True, tip=lambda x, y, data: f"warning at step {int(x)}: {data}",
        )
        self.warning_marks.sigClicked.connect(self._scatter_clicked)
        item.addItem(self.warning_marks)
        self._smoother = _IncrementalEma(0.9)
        self._epoch_lines: list[pg.InfiniteLine] = []
        self._markers: list[pg.GraphicsObject] = []
        self._overlays: list[pg.PlotDataItem] = []
        self._version = -1
        self._log = False
        self._marked_events = 0
        self._epochs_drawn = -1
        self.saturation_line: pg.InfiniteLine | None = None
        self.saturation_band: pg.LinearRegionItem | None = None
        state.reset.connect(self._clear)

    # -- user actions ---------------------------------------------------------------
    def set_log_scale(self, on: bool) -> None:
        self._log = bool(on)
        self.getPlotItem().setLogMode(x=False, y=self._log)
        self._version = self._marked_events = self._epochs_drawn = -1
        self.sticky.fit()
        self.refresh()

    def log_scale(self) -> bool:
        return self._log

    def add_overlay(self, name: str, steps: np.ndarray, loss: np.ndarray, val_x=None, val_y=None) -> None:
        """Overlay another run's smoothed batch loss (and val loss) for comparison."""
        color = OVERLAY_COLORS[len(self._overlays) // 2 % len(OVERLAY_COLORS)]
        x, y = _finite(np.asarray(steps, float), ema(np.asarray(loss, float)))
        curve = self.getPlotItem().plot(x, y, name=f"{name} (smoothed)", pen=pg.mkPen(color, width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        self._overlays.append(curve)
        if val_x is not None and len(val_x):
            vx, vy = _finite(np.asarray(val_x, float), np.asarray(val_y, float))
            vcurve = self.getPlotItem().plot(vx, vy, name=f"{name} val", pen=pg.mkPen(color, width=1.5, style=pg.QtCore.Qt.PenStyle.DotLine), symbol="s", symbolSize=5, symbolBrush=color, symbolPen=None)
            self._overlays.append(vcurve)
        self._legend_extra.append((f"{name} (smoothed, val dotted)", color, "dash"))
        self._update_legend()
        self._fit_range()

    def clear_overlays(self) -> None:
        for curve in self._overlays:
            self.getPlotItem().removeItem(curve)
        self._overlays.clear()
        self._legend_extra.clear()
        self._update_legend()
        self._fit_range()

    def _update_legend(self) -> None:
        self.legend_label.setText(legend_html(self._legend_base + self._legend_extra))

    # -- drawing ----------------------------------------------------------------------
    def _clear(self) -> None:
        self._smoother.reset()
        for curve in (self.batch_curve, self.smooth_curve, self.train_curve, self.val_curve):
            curve.setData([], [])
        self.warning_marks.setData([])
        for obj in self._epoch_lines + self._markers:
            self.getPlotItem().removeItem(obj)
        self._epoch_lines.clear()
        self._markers.clear()
        self.saturation_line = self.saturation_band = None
        self._marked_events = 0
        self._epochs_drawn = -1
        self._version = -1
        self.sticky.fit()

    def refresh(self) -> None:
        """Redraw what changed since the last call (the window's timer calls this)."""
        st = self.state
        if st.version == self._version:
            return
        self._version = st.version
        steps, loss = st.steps.get("step"), st.steps.get("loss")
        self.batch_curve.setData(*_finite(steps, loss))
        self.smooth_curve.setData(*_finite(steps, self._smoother.update(loss)))
        if len(st.epoch_end_step) != self._epochs_drawn:  # per-epoch items change only at epoch ends
            self._epochs_drawn = len(st.epoch_end_step)
            ep = st.history.get("epoch")
            x = np.array([st.epoch_end_step.get(int(e), np.nan) if np.isfinite(e) else np.nan for e in ep])
            self.train_curve.setData(*_finite(x, st.history.get("loss")))
            self.val_curve.setData(*_finite(x, st.history.get("val_loss")))
            self._draw_epoch_lines()
        if len(st.events) != self._marked_events:  # markers change only with events
            self._marked_events = len(st.events)
            self._draw_markers()
        self._fit_range()

    def fit_view(self) -> None:
        """Show all the data again and follow it (after the user zoomed or panned)."""
        self.sticky.fit()
        self._fit_range()

    def _fit_range(self) -> None:
        st = self.state
        steps = st.steps.get("step")
        ys = [st.steps.get("loss"), st.history.get("loss"), st.history.get("val_loss")]
        xmax = float(np.nanmax(steps)) if np.isfinite(steps).any() else math.nan
        for curve in self._overlays:
            ox, oy = curve.getOriginalDataset()
            if ox is not None and len(ox):
                xmax = float(np.nanmax([xmax, np.max(ox)]))
                ys.append(np.asarray(oy, float))
        lo, hi = _bounds(*ys, log=self._log)
        self.sticky.update(xmax, lo, hi, live=st.status in ("starting", "running"))

    def _draw_epoch_lines(self) -> None:
        ends = sorted(self.state.epoch_end_step.items())
        stride = max(1, len(ends) // 200)  # a few hundred lines at most, however long the run
        wanted = [s + 0.5 for i, (_, s) in enumerate(ends) if i % stride == 0]
        pen = pg.mkPen((120, 120, 120, 90), width=1, style=pg.QtCore.Qt.PenStyle.DotLine)
        while len(self._epoch_lines) < len(wanted):
            line = pg.InfiniteLine(angle=90, movable=False, pen=pen)
            line.setZValue(-10)
            self.getPlotItem().addItem(line, ignoreBounds=True)
            self._epoch_lines.append(line)
        for line, pos in zip(self._epoch_lines, wanted):
            line.setValue(pos)

    def _y_at(self, step: float) -> float:
        steps, loss = self.state.steps.get("step"), self.state.steps.get("loss")
        if not len(steps):
            return 0.0
        i = int(np.clip(np.searchsorted(steps, step), 0, len(steps) - 1))
        y = float(loss[i]) if np.isfinite(loss[i]) else float(np.nanmax(loss) if np.isfinite(loss).any() else 0)
        return math.log10(max(y, 1e-12)) if self.log_scale() else y

    def _draw_markers(self) -> None:
        st = self.state
        item = self.getPlotItem()
        for obj in self._markers:
            item.removeItem(obj)
        self._markers.clear()
        self.saturation_line = self.saturation_band = None
        warn_spots = []
        for event in st.events:
            if event.type == "warning":
                warn_spots.append({"pos": (event.step, self._y_at(event.step)), "data": event.message})
            elif event.type == "saturation":
                self._mark_saturation(event)
            elif event.type == "rollback":
                self._mark_rollback(event)
        # Warnings are plotted in data coordinates; in log mode the y values are log10.
        self.warning_marks.setData(warn_spots)

    def _mark_saturation(self, event) -> None:
        item = self.getPlotItem()
        onset, detected = float(event.onset_step), float(event.step)
        text = f"outputs saturated at step {event.onset_step}, epoch {event.epoch}"
        band = pg.LinearRegionItem(
            values=(onset, max(detected, onset + 0.5)), movable=False,
            brush=pg.mkBrush(*SATURATION_RED, 55), pen=pg.mkPen(None),
        )
        band.setZValue(-5)
        line = pg.InfiniteLine(
            pos=onset, angle=90, movable=False, pen=pg.mkPen(SATURATION_RED, width=2.5),
            hoverPen=pg.mkPen(SATURATION_RED, width=4), label=text,
            labelOpts={"position": 0.92, "color": (255, 255, 255), "fill": pg.mkBrush(*SATURATION_RED, 230),
                       "anchors": [(1, 0), (1, 0)]},
        )
        line.label.setFont(QFont(line.label.textItem.font().family(), 10, QFont.Weight.Bold))
        line.setToolTip(f"{text}\n{event.diagnosis}\nClick: compare predictions before and after")
        line.sigClicked.connect(lambda *_: self.markerClicked.emit(onset))
        for obj in (band, line):
            item.addItem(obj, ignoreBounds=True)
            self._markers.append(obj)
        self.saturation_line, self.saturation_band = line, band

    def _mark_rollback(self, event) -> None:
        item = self.getPlotItem()
        y = self._y_at(event.step)
        path = item.plot([event.step, event.to_step], [y, y], pen=pg.mkPen(ROLLBACK_PURPLE, width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        arrow = pg.ArrowItem(pos=(event.to_step, y), angle=0, headLen=14, tailLen=0, brush=ROLLBACK_PURPLE, pen=None)
        arrow.setToolTip(f"rollback at step {event.step} to step {event.to_step}; lr now {event.new_learning_rate:g}")
        item.addItem(arrow)
        self._markers.extend([path, arrow])
        path.sigClicked.connect(lambda *_: self.markerClicked.emit(float(event.step)))
        path.curve.setClickable(True, width=8)

    def _scatter_clicked(self, _item, points, *_):
        if len(points):
            self.markerClicked.emit(float(points[0].pos().x()))


class LossPanel(QWidget):
    """The loss plot with its legend row above it: what the window shows and what Export saves."""

    def __init__(self, plot: LossPlot, parent=None) -> None:
        super().__init__(parent)
        self.setObjectName("lossPanel")
        self.plot = plot
        self.setStyleSheet("#lossPanel, #lossLegend { background: white; }")
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        plot.legend_label.setContentsMargins(8, 2, 4, 0)
        layout.addWidget(plot.legend_label)
        layout.addWidget(plot, 1)


def _style_name(style) -> str | None:
    return None if style is None else "dash" if style == pg.QtCore.Qt.PenStyle.DashLine else "dot"


class SignalPlot(pg.GraphicsLayoutWidget):
    """The monitor's per-step signals, x-linked to the loss plot."""

    ROWS = (
        ("fractions", False, (
            ("pos_frac", "predicted positive", TRAIN_BLUE, None),
            ("mask_frac", "mask positive", (44, 160, 44), pg.QtCore.Qt.PenStyle.DashLine),
            ("pinned_frac", "pinned (saturated)", SATURATION_RED, None),
        )),
        ("logits", False, (
            ("logit_spread", "spatial spread", (148, 103, 189), None),
            ("logit_mean", "mean logit", (140, 86, 75), pg.QtCore.Qt.PenStyle.DashLine),
        )),
        ("gradient", True, (
            ("grad_norm", "gradient norm", (23, 190, 207), None),
            ("update_ratio", "update ratio", (188, 189, 34), None),
        )),
    )

    def __init__(self, state: RunState, parent=None) -> None:
        super().__init__(parent=parent)
        self.setObjectName("signalPlot")
        self.setAccessibleName("Monitor signal plot")
        self.setBackground("w")
        self.state = state
        self.plots: list[pg.PlotItem] = []
        self.curves: dict[str, pg.PlotDataItem] = {}
        self._sat_lines: list[pg.InfiniteLine] = []
        self.ranges: list[StickyRange] = []
        self._version = -1
        for row, (title, log, series) in enumerate(self.ROWS):
            plot = self.addPlot(row=row, col=0)
            _style_plot(plot, left=title, bottom="step" if row == len(self.ROWS) - 1 else None)
            plot.getAxis("left").setWidth(LEFT_AXIS_WIDTH)
            if row < len(self.ROWS) - 1:  # the x values are on the bottom row only; more height for the curves
                plot.getAxis("bottom").setStyle(showValues=False)
                plot.getAxis("bottom").setHeight(4)
            if log:
                plot.setLogMode(x=False, y=True)
            # the row's legend is its title: one line above the curves, never over them
            plot.setTitle(legend_html([(label, color, _style_name(style)) for _, label, color, style in series]),
                          size="8pt", justify="left")
            plot.titleLabel.setMaximumHeight(16)
            for key, label, color, style in series:
                pen = pg.mkPen(color, width=1.5, style=style or pg.QtCore.Qt.PenStyle.SolidLine)
                self.curves[key] = plot.plot(name=label, pen=pen, skipFiniteCheck=True)
            plot.setMouseEnabled(x=False, y=True)  # x follows the loss plot (see link_x)
            self.plots.append(plot)
            # x follows the loss plot; y keeps headroom (fractions: always 0..1)
            self.ranges.append(StickyRange(plot.getViewBox(), x=False, y=row > 0))
        self.plots[0].setYRange(0, 1, padding=0.04)
        self.plots[0].getAxis("left").setTicks([[(0, "0"), (0.5, "0.5"), (1, "1")], []])  # a short row: three labels
        state.reset.connect(self._clear)

    def link_x(self, other: pg.PlotItem) -> None:
        """Follow the loss plot's x range (zoom and pan there; these plots share the axis).

        A plain one-way sync, not pyqtgraph's setXLink: with PySide6 6.12 the
        link's slot corrupts a refcount and crashes the interpreter.
        """
        other.getViewBox().sigXRangeChanged.connect(self._follow_x)

    def _follow_x(self, _view, x_range) -> None:
        for plot in self.plots:
            plot.getViewBox().setXRange(float(x_range[0]), float(x_range[1]), padding=0)

    def _clear(self) -> None:
        for curve in self.curves.values():
            curve.setData([], [])
        for plot, line in zip(self.plots, self._sat_lines):
            plot.removeItem(line)
        self._sat_lines.clear()
        for sticky in self.ranges:
            sticky.fit()
        self._version = -1

    def fit_view(self) -> None:
        for sticky in self.ranges:
            sticky.fit()
        self._version = -1
        self.refresh()

    def refresh(self) -> None:
        st = self.state
        if st.version == self._version:
            return
        self._version = st.version
        steps = st.steps.get("step")
        live = st.status in ("starting", "running")
        for (_, log, series), sticky in zip(self.ROWS, self.ranges):
            columns = []
            for key, *_ in series:
                y = st.steps.get(key)
                if log:
                    y = np.where(np.isfinite(y), np.maximum(y, 1e-12), np.nan)
                columns.append(y)
                self.curves[key].setData(*_finite(steps, y))
            if sticky.y:
                sticky.update(math.nan, *_bounds(*columns, log=log), live=live)
        sat = st.saturation()
        if sat is not None and not self._sat_lines:
            for plot in self.plots:
                line = pg.InfiniteLine(pos=float(sat.onset_step), angle=90, movable=False, pen=pg.mkPen(SATURATION_RED, width=1.5))
                plot.addItem(line, ignoreBounds=True)
                self._sat_lines.append(line)


def _suspend_item_caches(widget: QWidget) -> list:
    """Turn off pixmap caches in every plot under ``widget`` (an export draws at 2x or as vectors)."""
    views = [widget] if isinstance(widget, pg.GraphicsView) else []
    views += widget.findChildren(pg.GraphicsView)
    suspended = []
    for view in views:
        for item in view.scene().items():
            mode = item.cacheMode()
            if mode != QGraphicsItem.CacheMode.NoCache:
                suspended.append((item, mode))
                item.setCacheMode(QGraphicsItem.CacheMode.NoCache)
    return suspended


def export_plot(widget: QWidget, path: str, *, scale: float = 2.0) -> None:
    """Save a plot panel as PNG (``scale`` x, for crisp documents) or SVG, by the file's suffix.

    The widget is drawn as it is on screen, so a legend row outside the plot
    (the loss panel's) is part of the picture. SVG is drawn with Qt's own
    QSvgGenerator: pyqtgraph 0.14's SVGExporter fails on the paths Qt 6.11 writes.
    """
    from PySide6.QtCore import QPoint, QRect, QSize
    from PySide6.QtGui import QImage, QPainter

    suspended = _suspend_item_caches(widget)
    try:
        if path.lower().endswith(".svg"):
            from PySide6.QtSvg import QSvgGenerator

            gen = QSvgGenerator()
            gen.setFileName(path)
            gen.setSize(QSize(widget.width(), widget.height()))
            gen.setViewBox(QRect(0, 0, widget.width(), widget.height()))
            gen.setTitle("Tilewatch plot")
            painter = QPainter(gen)
            try:
                QWidget.render(widget, painter, QPoint())  # QWidget's: QGraphicsView.render draws the scene only
            finally:
                painter.end()
            return
        image = QImage(QSize(round(widget.width() * scale), round(widget.height() * scale)), QImage.Format.Format_ARGB32)
        image.setDevicePixelRatio(scale)
        image.fill(Qt.GlobalColor.white)
        painter = QPainter(image)
        try:
            painter.setRenderHint(QPainter.RenderHint.Antialiasing)
            painter.setRenderHint(QPainter.RenderHint.TextAntialiasing)
            QWidget.render(widget, painter, QPoint())
        finally:
            painter.end()
        if not image.save(path):
            raise OSError(f"cannot write {path}")
    finally:
        for item, mode in suspended:
            item.setCacheMode(mode)
