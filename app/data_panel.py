"""The data panel: choose a tile folder, see what ``core check`` says, preview tiles."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMenu,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import imaging

__all__ = ["DataPanel", "MAX_RECENT"]

log = logging.getLogger(__name__)
MAX_RECENT = 8


def local_dir_from_mime(mime) -> Path | None:
    """The first local folder in a drag's URLs, if any."""
    if mime is None or not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile():
            path = Path(url.toLocalFile())
            return path if path.is_dir() else path.parent if path.parent.is_dir() else None
    return None


class DataPanel(QWidget):
    """Folder chooser (browse, drop, recent), check summary and the band-picker preview."""

    datasetChanged = Signal(object)  # core.tiles.DatasetInfo, or None when unusable
    bandsChanged = Signal(tuple)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAcceptDrops(True)
        self.dataset: Any = None
        self.problems: list[str] = []
        self.path_edit = QLineEdit(objectName="dataPathEdit")
        self.path_edit.setAccessibleName("Data folder")
        self.path_edit.setPlaceholderText("Tile folder (images/ and masks/) — drop one here")
        self.path_edit.setToolTip("A folder with images/<name>.tif and masks/<name>.tif; press Enter to check it")
        self.path_edit.returnPressed.connect(lambda: self.set_folder(self.path_edit.text()))
        browse = QPushButton("Browse…", objectName="browseDataButton")
        browse.clicked.connect(self._browse)
        self.recent_button = QToolButton(objectName="recentDataButton")
        self.recent_button.setText("Recent")
        self.recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.recent_menu = QMenu(self.recent_button)
        self.recent_button.setMenu(self.recent_menu)
        self._refresh_recent()

        self.summary = QPlainTextEdit(objectName="dataSummary")
        self.summary.setReadOnly(True)
        self.summary.setPlaceholderText("Choose a tile folder to see its tiles, sizes, bands, masks and problems.")
        self.summary.setMaximumHeight(190)
        self.summary.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)

        # preview controls
        self.band_spins = []
        bands_row = QHBoxLayout()
        for i, name in enumerate("RGB"):
            spin = QSpinBox(objectName=f"band{name}Spin")
            spin.setRange(1, 1)
            spin.setValue(1)
            spin.setPrefix(f"{name}: band ")
            spin.setToolTip(f"Band shown as {'red green blue'.split()[i]} (1-based)")
            spin.valueChanged.connect(self._bands_edited)
            self.band_spins.append(spin)
            bands_row.addWidget(spin)
        self.stretch_spin = QSpinBox(objectName="stretchSpin")
        self.stretch_spin.setRange(0, 20)
        self.stretch_spin.setValue(2)
        self.stretch_spin.setPrefix("stretch ")
        self.stretch_spin.setSuffix(" %")
        self.stretch_spin.setToolTip("Percentile stretch: clip this share of the darkest and brightest pixels per band")
        self.stretch_spin.valueChanged.connect(lambda _: self.redraw())
        self.opacity_slider = QSlider(Qt.Orientation.Horizontal, objectName="maskOpacitySlider")
        self.opacity_slider.setRange(0, 100)
        self.opacity_slider.setValue(40)
        self.opacity_slider.setToolTip("Mask overlay opacity")
        self.opacity_slider.valueChanged.connect(lambda _: self.redraw())
        self.tile_combo = QComboBox(objectName="previewTileCombo")
        self.tile_combo.currentIndexChanged.connect(lambda _: self.redraw())
        prev_btn = QToolButton(objectName="prevTileButton", text="◀")
        prev_btn.setToolTip("Previous tile")
        prev_btn.clicked.connect(lambda: self.step_tile(-1))
        next_btn = QToolButton(objectName="nextTileButton", text="▶")
        next_btn.setToolTip("Next tile")
        next_btn.clicked.connect(lambda: self.step_tile(+1))

        self.preview = pg.GraphicsLayoutWidget()
        self.preview.setObjectName("tilePreview")
        self.preview.setBackground("w")
        self.preview.setMinimumHeight(220)
        self.view = self.preview.addViewBox(lockAspect=True, invertY=True, enableMenu=False)
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.view.addItem(self.image_item)
        self.pixel_label = QLabel(" ", objectName="previewPixelLabel")
        self.pixel_label.setWordWrap(True)
        self.preview.scene().sigMouseMoved.connect(self._hover)
        self._image: np.ndarray | None = None
        self._mask: np.ndarray | None = None

        top = QHBoxLayout()
        top.addWidget(self.path_edit, 1)
        top.addWidget(browse)
        top.addWidget(self.recent_button)
        tiles_row = QHBoxLayout()
        tiles_row.addWidget(prev_btn)
        tiles_row.addWidget(self.tile_combo, 1)
        tiles_row.addWidget(next_btn)
        form = QFormLayout()
        form.addRow("Tile", tiles_row)
        form.addRow("Bands", bands_row)
        overlay_row = QHBoxLayout()
        overlay_row.addWidget(self.stretch_spin)
        overlay_row.addWidget(QLabel("mask"))
        overlay_row.addWidget(self.opacity_slider, 1)
        form.addRow("Display", overlay_row)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(self.summary)
        layout.addLayout(form)
        layout.addWidget(self.preview, 1)
        layout.addWidget(self.pixel_label)

    # -- folder -------------------------------------------------------------------------
    def folder(self) -> Path | None:
        text = self.path_edit.text().strip()
        return Path(text) if text else None

    def set_folder(self, folder: str | Path, *, remember: bool = True) -> bool:
        """Check a folder with ``core.tiles.scan_dataset``; True when it is usable."""
        from core.tiles import DatasetError, scan_dataset

        folder = Path(folder).expanduser()
        self.path_edit.setText(str(folder))
        self.dataset, self.problems = None, []
        QGuiApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)
        try:
            info = scan_dataset(folder)
        except DatasetError as exc:
            self.problems = [str(p) for p in exc.problems]
            self.summary.setPlainText(
                f"{folder}: cannot be used for training ({len(self.problems)} problem"
                f"{'s' if len(self.problems) != 1 else ''}):\n" + "\n".join(f"  • {p}" for p in self.problems)
            )
            self._set_tiles([])
            self.datasetChanged.emit(None)
            return False
        except (OSError, ValueError) as exc:
            self.problems = [str(exc)]
            self.summary.setPlainText(f"{folder}: {exc}")
            self._set_tiles([])
            self.datasetChanged.emit(None)
            return False
        finally:
            QGuiApplication.restoreOverrideCursor()
        self.dataset = info
        self.summary.setPlainText(info.format())
        for spin in self.band_spins:
            spin.blockSignals(True)
            spin.setRange(1, info.channels)
            spin.blockSignals(False)
        default = (3, 2, 1) if info.channels >= 3 else (1, 1, 1)  # natural colour when bands are B,G,R,…
        for spin, b in zip(self.band_spins, default):
            spin.blockSignals(True)
            spin.setValue(b)
            spin.blockSignals(False)
        self._set_tiles(list(info.tiles))
        if remember:
            self._remember(folder)
        self.datasetChanged.emit(info)
        self.bandsChanged.emit(self.bands())
        return True

    def _browse(self) -> None:
        start = str(self.folder() or Path.home())
        folder = QFileDialog.getExistingDirectory(self, "Choose a tile folder", start)
        if folder:
            self.set_folder(folder)

    def _remember(self, folder: Path) -> None:
        settings = QSettings()
        recent = [str(folder)] + [f for f in self.recent() if f != str(folder)]
        settings.setValue("recentDataFolders", recent[:MAX_RECENT])
        self._refresh_recent()

    @staticmethod
    def recent() -> list[str]:
        value = QSettings().value("recentDataFolders", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in value or []]

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        folders = self.recent()
        for folder in folders:
            self.recent_menu.addAction(folder, lambda f=folder: self.set_folder(f))
        if not folders:
            self.recent_menu.addAction("(no recent folders)").setEnabled(False)

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt override
        if local_dir_from_mime(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802 - Qt override
        folder = local_dir_from_mime(event.mimeData())
        if folder is not None:
            event.acceptProposedAction()
            self.set_folder(folder)

    # -- preview -------------------------------------------------------------------------
    def bands(self) -> tuple[int, int, int]:
        return tuple(s.value() - 1 for s in self.band_spins)  # type: ignore[return-value]

    def _bands_edited(self) -> None:
        self.redraw()
        self.bandsChanged.emit(self.bands())

    def _set_tiles(self, tiles: list) -> None:
        self._tiles = tiles
        self.tile_combo.blockSignals(True)
        self.tile_combo.clear()
        self.tile_combo.addItems([t.name for t in tiles])
        self.tile_combo.blockSignals(False)
        self.redraw()

    def show_tile(self, name: str) -> bool:
        """Preview the tile called ``name`` (a stem); False when the folder has none."""
        i = self.tile_combo.findText(name)
        if i >= 0:
            self.tile_combo.setCurrentIndex(i)
        return i >= 0

    def step_tile(self, delta: int) -> None:
        n = self.tile_combo.count()
        if n:
            self.tile_combo.setCurrentIndex((self.tile_combo.currentIndex() + delta) % n)

    def redraw(self) -> None:
        from core.tiles import read_image, read_mask

        tiles = getattr(self, "_tiles", [])
        i = self.tile_combo.currentIndex()
        if not tiles or i < 0 or self.dataset is None:
            self.image_item.clear()
            self._image = self._mask = None
            return
        tile = tiles[i]
        try:
            self._image = read_image(tile)
            self._mask = read_mask(tile, kind=self.dataset.mask_kind, num_outputs=self.dataset.num_outputs)
        except (OSError, ValueError) as exc:
            self.pixel_label.setText(f"cannot read {tile.name}: {exc}")
            self.image_item.clear()
            return
        low = float(self.stretch_spin.value())
        rgb = imaging.composite(self._image, self.bands(), low, 100.0 - low)
        rgb = imaging.mask_overlay(rgb, self._mask, self.opacity_slider.value() / 100.0)
        self.image_item.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.view.autoRange(padding=0.01)

    def _hover(self, scene_pos) -> None:
        if self._image is None or not self.view.sceneBoundingRect().contains(scene_pos):
            return
        p = self.view.mapSceneToView(scene_pos)
        r, c = int(p.y()), int(p.x())
        if 0 <= r < self._image.shape[0] and 0 <= c < self._image.shape[1]:
            bands = ", ".join(f"{v:g}" for v in np.atleast_1d(self._image[r, c]).tolist())
            mask = np.atleast_1d(self._mask[r, c]).tolist() if self._mask is not None else "—"
            self.pixel_label.setText(f"({r}, {c})  bands: {bands}   mask: {mask}")
