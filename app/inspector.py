"""The prediction inspector (``inspectorView``) and its ``epochSlider``.

For one probe tile: an RGB composite, the mask, the predicted probability, an
overlay and the difference against the mask (false positives orange, false
negatives blue), with a histogram of the probabilities. The slider steps
through every saved epoch and the snapshots taken at detection; the
before/after mode puts the last healthy epoch beside the first collapsed one.
"""

from __future__ import annotations

import logging
import math
from functools import lru_cache
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from app import imaging
from app.runstate import RunState, Snapshot

__all__ = ["Inspector"]

log = logging.getLogger(__name__)

PANELS = ("image (RGB)", "mask", "probability", "overlay", "difference")


@lru_cache(maxsize=16)
def _read_prediction(path: str, mtime: float) -> np.ndarray:
    from core.runstore import read_prediction

    return read_prediction(path)


@lru_cache(maxsize=32)
def _read_tile(path: str) -> np.ndarray:
    return imaging.read_tile_array(path)


HIST_BINS = 40
HIST_FLOOR = 1e-5  # the log-y histogram's floor: an empty bin is drawn at this share


def render_snapshot(probe: dict, tile: int, snap_path: str | None, bands, opacity: float) -> dict:
    """Read and colour one probe tile's prediction: everything the row shows, as uint8 arrays.

    Pure numpy + file reads, no widgets: it runs in a pool thread so the GUI
    thread never waits on a TIFF read or a colormap. Read errors (a file being
    written or gone) leave that part out and are reported in ``error``.
    """
    image = mask = prob = None
    error = ""
    try:
        if tile < len(probe.get("images", [])):
            image = _read_tile(str(probe["images"][tile]))
        if tile < len(probe.get("masks", [])):
            mask = _read_tile(str(probe["masks"][tile]))
        if snap_path is not None:
            path = Path(snap_path)
            if path.exists():
                pred = _read_prediction(str(path), path.stat().st_mtime)
                if tile < len(pred):
                    prob = imaging.probability_map(pred[tile])
    except (OSError, ValueError) as exc:
        error = f"cannot read {snap_path or 'the probe tile'}: {exc}"
    rgb = imaging.composite(image, bands) if image is not None else None
    mask_fg = imaging.foreground(mask) if mask is not None else None
    mask_rgb = (np.repeat(mask_fg[..., None], 3, axis=-1) * 255).astype(np.uint8) if mask_fg is not None else None
    prob_rgb = imaging.probability_rgb(prob) if prob is not None else None
    overlay = diff = hist = None
    if prob is not None:
        pred_fg = prob >= 0.5
        base = rgb if rgb is not None else np.zeros(prob.shape + (3,), np.uint8)
        overlay = imaging.mask_overlay(base, pred_fg, opacity, color=(255, 215, 0))
        if mask_fg is not None and mask_fg.shape == pred_fg.shape:
            diff = imaging.difference_rgb(pred_fg, mask_fg)
        counts, edges = np.histogram(np.nan_to_num(prob), bins=HIST_BINS, range=(0.0, 1.0))
        hist = (edges, counts / max(1, counts.sum()))
    return {"arrays": (rgb, mask_rgb, prob_rgb, overlay, diff), "hist": hist,
            "cache": (image, mask, prob), "error": error}


class _Signals(QObject):
    done = Signal(object, int, object)  # row, token, result


class _RenderJob(QRunnable):
    def __init__(self, signals: _Signals, row: "_Row", token: int, args: tuple) -> None:
        super().__init__()
        self.signals, self.row, self.token, self.args = signals, row, token, args

    def run(self) -> None:
        try:
            result = render_snapshot(*self.args)
        except Exception as exc:  # noqa: BLE001 - shown in the hover line, never raised in a pool thread
            log.exception("inspector: rendering failed")
            result = {"arrays": (None,) * 5, "hist": None, "cache": None, "error": f"cannot show it: {exc}"}
        try:
            self.signals.done.emit(self.row, self.token, result)
        except RuntimeError:  # the inspector is gone (window closed)
            pass


class _Row(QWidget):
    """One prediction shown five ways, plus a log-y histogram of its probabilities."""

    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role
        self.title = QLabel(objectName=f"{role}RowTitle")
        self.title.setTextFormat(Qt.TextFormat.RichText)
        self.graphics = pg.GraphicsLayoutWidget()
        self.graphics.setBackground("w")
        self.graphics.ci.setSpacing(4)
        self.graphics.ci.setContentsMargins(2, 0, 2, 2)
        self.views: list[pg.PlotItem] = []
        self.images: list[pg.ImageItem] = []
        for col, name in enumerate(PANELS):
            plot = self.graphics.addPlot(row=0, col=col)
            plot.setTitle(name, size="9pt")
            plot.titleLabel.setMaximumHeight(18)
            plot.hideAxis("left")
            plot.hideAxis("bottom")
            plot.setMenuEnabled(False)
            plot.hideButtons()
            plot.setMouseEnabled(False, False)
            plot.setAspectLocked(True)
            plot.invertY(True)
            image = pg.ImageItem(axisOrder="row-major")  # drawn unsmoothed: mask pixels stay crisp
            plot.addItem(image)
            self.views.append(plot)
            self.images.append(image)
        self.hist = self.graphics.addPlot(row=0, col=len(PANELS))
        self.hist.setTitle("probability histogram (log)", size="9pt")
        self.hist.titleLabel.setMaximumHeight(18)
        self.hist.setMouseEnabled(False, False)
        self.hist.setMenuEnabled(False)
        self.hist.hideButtons()
        self.hist.showGrid(x=False, y=True, alpha=0.2)
        font = QFont()
        font.setPointSize(8)
        for side in ("left", "bottom"):
            axis = self.hist.getAxis(side)
            axis.setTickFont(font)
            axis.setStyle(tickTextOffset=2)
        self.hist.setLabel("bottom", "predicted probability", **{"font-size": "8pt"})
        self.hist.setLabel("left", "share of pixels", **{"font-size": "8pt"})
        self.hist.getAxis("left").setWidth(46)
        self.hist.setLogMode(x=False, y=True)
        self.hist.setXRange(0, 1, padding=0.02)
        self.hist.setYRange(math.log10(HIST_FLOOR), 0.05, padding=0)
        self.hist_curve = self.hist.plot(stepMode="center", fillLevel=math.log10(HIST_FLOOR),
                                         brush=(31, 119, 180, 160), pen=pg.mkPen((31, 119, 180)))
        self.hist_fraction: np.ndarray | None = None  # the bars' shares of pixels (not log)
        layout = self.graphics.ci.layout
        for col in range(len(PANELS)):
            layout.setColumnStretchFactor(col, 3)
        layout.setColumnStretchFactor(len(PANELS), 4)
        box = QVBoxLayout(self)
        box.setContentsMargins(0, 0, 0, 0)
        box.setSpacing(0)
        box.addWidget(self.title)
        box.addWidget(self.graphics, 1)
        self.token = 0  # the latest render asked for; older results are dropped
        self._cache = None

    def scene(self):
        return self.graphics.scene()

    def set_title(self, text: str, color: str = "#222") -> None:
        self.title.setText(f"<span style='color:{color}; font-weight:bold; font-size:10pt'>{text}</span>")

    def show_arrays(self, rgb, mask_rgb, prob_rgb, overlay, diff, hist=None) -> None:
        for image, arr in zip(self.images, (rgb, mask_rgb, prob_rgb, overlay, diff)):
            if arr is None:
                image.clear()
            else:
                image.setImage(arr, autoLevels=False, levels=(0, 255))
        for view, arr in zip(self.views, (rgb, mask_rgb, prob_rgb, overlay, diff)):
            if arr is not None:
                view.setRange(xRange=(0, arr.shape[1]), yRange=(0, arr.shape[0]), padding=0)
        if hist is not None:
            edges, frac = hist
            self.hist_fraction = frac
            self.hist_curve.setData(edges, np.maximum(frac, HIST_FLOOR))
        else:
            self.hist_fraction = None
            self.hist_curve.setData([], [])


class Inspector(QWidget):
    """Probe-tile predictions over time; the before/after of a collapse."""

    def __init__(self, state: RunState, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("inspectorView")
        self.setAccessibleName("Prediction inspector")
        self.state = state
        self.bands = (0, 1, 2)
        self.opacity = 0.45
        self._follow = True

        self.tile_combo = QComboBox(objectName="probeTileCombo")
        self.tile_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.tile_combo.setMinimumContentsLength(10)
        self.tile_combo.setToolTip("Probe tile: a validation tile predicted at every epoch end and at detection")
        self.slider = QSlider(Qt.Orientation.Horizontal, objectName="epochSlider")
        self.slider.setAccessibleName("Epoch slider")
        self.slider.setToolTip("Every saved epoch and the snapshots taken when a saturation was detected")
        self.slider.setPageStep(1)
        self.slider.setTickPosition(QSlider.TickPosition.TicksBelow)
        self.snapshot_label = QLabel("no predictions yet", objectName="snapshotLabel")
        self.snapshot_label.setMinimumWidth(190)
        self.before_after = QCheckBox("Before / after", objectName="beforeAfterCheck")
        self.before_after.setToolTip("Side by side: the last healthy epoch and the first collapsed prediction")
        self.hover_label = QLabel(" ", objectName="hoverLabel")
        self.hover_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        bar = QHBoxLayout()
        bar.addWidget(QLabel("Probe tile:"))
        bar.addWidget(self.tile_combo)
        bar.addSpacing(12)
        bar.addWidget(QLabel("Prediction:"))
        bar.addWidget(self.slider, 1)
        bar.addWidget(self.snapshot_label)
        bar.addWidget(self.before_after)

        self.before_row = _Row("before")
        self.after_row = _Row("after")
        self.before_row.hide()
        self.main_row = _Row("prediction")

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        layout.addLayout(bar)
        layout.addWidget(self.main_row, 1)
        layout.addWidget(self.before_row, 1)
        layout.addWidget(self.after_row, 1)
        layout.addWidget(self.hover_label)
        self.after_row.hide()

        self._before: Snapshot | None = None
        self._after: Snapshot | None = None
        # TIFF reads and colouring run here, off the GUI thread; one at a time, newest wins.
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(1)
        self._pending = 0
        self._signals = _Signals(self)
        self._signals.done.connect(self._rendered)
        self.slider.valueChanged.connect(self._slider_moved)
        self.tile_combo.currentIndexChanged.connect(lambda _: self.redraw())
        self.before_after.toggled.connect(self._toggle_before_after)
        for row in (self.main_row, self.before_row, self.after_row):
            row.scene().sigMouseMoved.connect(lambda pos, r=row: self._hover(r, pos))
        state.snapshots_changed.connect(self._snapshots_changed)
        state.reset.connect(self._reset)

    # -- public ----------------------------------------------------------------------
    def current(self) -> Snapshot | None:
        snaps = self.state.snapshots
        i = self.slider.value()
        return snaps[i] if 0 <= i < len(snaps) else None

    def set_bands(self, bands: tuple[int, int, int]) -> None:
        self.bands = tuple(bands)
        self.redraw()

    def show_before_after(self, before: Snapshot | None = None, after: Snapshot | None = None) -> bool:
        """Side by side: ``before``/``after``, or the run's last healthy and first collapsed."""
        if before is None and after is None:
            before, after = self.state.before_after()
        if before is None and after is None:
            return False
        self._before, self._after = before, after
        if after is not None and after in self.state.snapshots:
            self._follow = False
            self.slider.blockSignals(True)
            self.slider.setValue(self.state.snapshots.index(after))
            self.slider.blockSignals(False)
        self.before_after.blockSignals(True)
        self.before_after.setChecked(True)
        self.before_after.blockSignals(False)
        self._apply_mode()
        return True

    def jump_to_step(self, step: float) -> None:
        """A marker was clicked: the predictions just before and just after ``step``."""
        sat = self.state.saturation()
        if sat is not None and abs(step - sat.onset_step) < 1:
            self.show_before_after()
        else:
            self.show_before_after(*self.state.snapshots_around(step))

    # -- internals ---------------------------------------------------------------------
    def _reset(self) -> None:
        self._before = self._after = None
        self._follow = True
        self.tile_combo.clear()
        self.slider.setRange(0, 0)
        self.before_after.setChecked(False)
        self.snapshot_label.setText("no predictions yet")
        for row in (self.main_row, self.before_row, self.after_row):
            row.token += 1
            row.show_arrays(None, None, None, None, None)
            row._cache = None

    def _snapshots_changed(self) -> None:
        names = list(self.state.probe.get("tiles", []))
        if names and self.tile_combo.count() != len(names):
            self.tile_combo.blockSignals(True)
            self.tile_combo.clear()
            self.tile_combo.addItems(names)
            self.tile_combo.blockSignals(False)
        n = len(self.state.snapshots)
        follow = self._follow
        self.slider.blockSignals(True)
        self.slider.setRange(0, max(0, n - 1))
        if follow:
            self.slider.setValue(max(0, n - 1))
        self.slider.blockSignals(False)
        self.redraw()

    def _slider_moved(self, _value: int) -> None:
        self._follow = self.slider.value() == self.slider.maximum()
        if self.before_after.isChecked():
            self._after = self.current()
            before = [s for s in self.state.snapshots if self._after and s.kind == "epoch" and s.step < self._after.step]
            self._before = before[-1] if before else None
        self.redraw()

    def _toggle_before_after(self, on: bool) -> None:
        if on and not (self._before or self._after):
            before, after = self.state.before_after()
            if after is None:
                after = self.current()
                prior = [s for s in self.state.snapshots if after and s.kind == "epoch" and s.step < after.step]
                before = prior[-1] if prior else None
            self._before, self._after = before, after
        self._apply_mode()

    def _apply_mode(self) -> None:
        on = self.before_after.isChecked()
        self.main_row.setVisible(not on)
        self.before_row.setVisible(on)
        self.after_row.setVisible(on)
        self.redraw()

    def _tile_index(self) -> int:
        return max(0, self.tile_combo.currentIndex())

    def pending(self) -> int:
        """Renders asked for and not yet shown (tests and screenshots wait for 0)."""
        return self._pending

    def wait_rendered(self, timeout_ms: int = 5000) -> bool:
        """Process events until every asked-for render is shown; False on timeout."""
        from PySide6.QtCore import QDeadlineTimer
        from PySide6.QtWidgets import QApplication

        deadline = QDeadlineTimer(timeout_ms)
        while self._pending and not deadline.hasExpired():
            self.pool.waitForDone(20)
            QApplication.processEvents()
        return not self._pending

    def redraw(self) -> None:
        if self.before_after.isChecked():
            collapsed = self.state.saturation() is not None
            self._draw(self.before_row, self._before, "last healthy" if collapsed else "before", "#2a7a2a")
            self._draw(self.after_row, self._after, "collapsed" if collapsed else "after",
                       "#b00000" if collapsed else "#222")
            b = self._before.label if self._before else "—"
            a = self._after.label if self._after else "—"
            self.snapshot_label.setText(f"before: {b}  |  after: {a}")
        else:
            snap = self.current()
            self._draw(self.main_row, snap, "prediction", "#222")
            self.snapshot_label.setText(snap.label if snap else "no predictions yet")

    def _draw(self, row: _Row, snap: Snapshot | None, role: str, color: str) -> None:
        """Ask the pool for this row's picture; it lands in _rendered (GUI thread)."""
        tiles = self.state.probe.get("tiles", [])
        i = self._tile_index()
        tile = f" · tile {tiles[i]}" if i < len(tiles) else ""
        row.set_title(f"{role}: {snap.label}{tile}" if snap else f"{role}: —", color)
        row.token += 1
        if snap is None and not self.state.probe:
            row.show_arrays(None, None, None, None, None)
            row._cache = None
            return
        args = (dict(self.state.probe), i, str(snap.path) if snap else None, tuple(self.bands), self.opacity)
        self._pending += 1
        self.pool.start(_RenderJob(self._signals, row, row.token, args))

    def _rendered(self, row: _Row, token: int, result: dict) -> None:
        self._pending = max(0, self._pending - 1)
        if token != row.token:  # a newer render was asked for meanwhile
            return
        row.show_arrays(*result["arrays"], hist=result["hist"])
        row._cache = result["cache"]
        if result["error"]:
            log.warning("inspector: %s", result["error"])
            self.hover_label.setText(result["error"])

    def shutdown(self) -> None:
        """Wait for the render in flight (at most one), so no pool thread outlives the window."""
        self.pool.clear()
        self.pool.waitForDone(5000)

    def _hover(self, row: _Row, scene_pos) -> None:
        cache = getattr(row, "_cache", None)
        if not cache:
            return
        image, mask, prob = cache
        for view in row.views:
            if view.vb.sceneBoundingRect().contains(scene_pos):
                p = view.vb.mapSceneToView(scene_pos)
                r, c = int(p.y()), int(p.x())
                ref = next((a for a in (image, prob, mask) if a is not None), None)
                if ref is None or not (0 <= r < ref.shape[0] and 0 <= c < ref.shape[1]):
                    return
                parts = [f"pixel (row {r}, col {c})"]
                if image is not None:
                    px = np.atleast_1d(image[r, c])
                    parts.append("bands " + ", ".join(f"{v:g}" for v in px.tolist()))
                if mask is not None:
                    parts.append(f"mask {np.atleast_1d(mask[r, c]).tolist()}")
                if prob is not None:
                    parts.append(f"p = {float(prob[r, c]):.4g}")
                self.hover_label.setText("   ·   ".join(parts))
                return

