"""The configuration form: every key, grouped as in the TOML, flagged when invalid.

Values are validated by ``core.config`` itself (the same rules as the CLI):
an invalid field gets a red frame and the error as its tooltip before Start.
Pre-flight warnings (``core.preflight``) are listed under the form, each with
a Fix button.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from PySide6.QtCore import QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from core.config import Config, ConfigError, describe_keys, load_config, preset_path

__all__ = ["ConfigPanel", "PRESETS"]

#: (label in the picker, preset file stem)
PRESETS = (
    ("default (recommended)", "default"),
    ("demo (fast, CPU)", "demo"),
    ("see a collapse", "collapse"),
    ("the seed's set-up", "seed"),
)
_KEY_RE = re.compile(r"'([a-z_]+\.[a-z_]+)'")
_INVALID_STYLE = "border: 2px solid #d62728; border-radius: 3px; background: #fff0f0;"


def _text_of(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_text_of(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _parse(text: str, default: Any) -> Any:
    """A field's text as the TOML value a user means (bare words stay strings)."""
    try:
        value = tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


class ConfigPanel(QWidget):
    """Every config key as a form field; presets; TOML load/save; pre-flight."""

    configChanged = Signal()
    fixRequested = Signal(dict)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.fields: dict[str, QWidget] = {}
        self.defaults: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.band_ranges: Any = None
        self.device: Mapping[str, Any] | None = None
        self._loading = False

        self.preset_combo = QComboBox(objectName="presetCombo")
        self.preset_combo.setAccessibleName("Preset")
        for label, stem in PRESETS:
            if preset_path(stem).is_file():
                self.preset_combo.addItem(label, stem)
        self.preset_combo.addItem("custom", "")
        self.preset_combo.setToolTip("Start from a bundled configuration")
        self.preset_combo.activated.connect(self._preset_chosen)
        load_btn = QPushButton("Load…", objectName="loadConfigButton")
        load_btn.setToolTip("Load a TOML configuration file")
        load_btn.clicked.connect(self._load_dialog)
        save_btn = QPushButton("Save…", objectName="saveConfigButton")
        save_btn.setToolTip("Save this configuration as TOML (for `python -m core train --config`)")
        save_btn.clicked.connect(self._save_dialog)
        top = QHBoxLayout()
        top.addWidget(QLabel("Preset"))
        top.addWidget(self.preset_combo, 1)
        top.addWidget(load_btn)
        top.addWidget(save_btn)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        self.error_label = QLabel(objectName="configErrorLabel")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b00000;")
        self.error_label.hide()
        layout.addWidget(self.error_label)
        self.preflight_box = QGroupBox("Pre-flight checks", objectName="preflightBox")
        self.preflight_layout = QVBoxLayout(self.preflight_box)
        layout.addWidget(self.preflight_box)

        groups: dict[str, QFormLayout] = {}
        for dotted, default, help_text, choices in describe_keys():
            section, key = dotted.split(".", 1)
            if section not in groups:
                box = QGroupBox(f"[{section}]", objectName=f"{section}Group")
                groups[section] = QFormLayout(box)
                groups[section].setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
                layout.addWidget(box)
            widget = self._make_field(dotted, default, choices)
            tip = f"<b>{dotted}</b> (default {_text_of(default)})<br>{help_text}"
            if choices:
                tip += "<br>choices: " + ", ".join(choices)
            widget.setToolTip(tip)
            widget.setObjectName("cfg_" + dotted.replace(".", "_"))
            widget.setAccessibleName(dotted)
            label = QLabel(key)
            label.setToolTip(tip)
            groups[section].addRow(label, widget)
            self.fields[dotted] = widget
            self.defaults[dotted] = default
        layout.addStretch(1)

        self._validate_timer = QTimer(self, singleShot=True, interval=250)
        self._validate_timer.timeout.connect(self.validate)
        self.load_preset("default")

    # -- fields ------------------------------------------------------------------------
    def _make_field(self, dotted: str, default: Any, choices) -> QWidget:
        if isinstance(default, bool):
            w = QCheckBox()
            w.toggled.connect(self._edited)
        elif choices:
            w = QComboBox()
            w.addItems(list(choices))
            w.currentIndexChanged.connect(self._edited)
        else:
            w = QLineEdit()
            w.textEdited.connect(self._edited)
        return w

    def _field_value(self, dotted: str) -> Any:
        w, default = self.fields[dotted], self.defaults[dotted]
        if isinstance(w, QCheckBox):
            return w.isChecked()
        if isinstance(w, QComboBox):
            return w.currentText()
        return _parse(w.text(), default)

    def _set_field(self, dotted: str, value: Any) -> None:
        w = self.fields[dotted]
        w.blockSignals(True)
        if isinstance(w, QCheckBox):
            w.setChecked(bool(value))
        elif isinstance(w, QComboBox):
            w.setCurrentText(str(value))
        else:
            w.setText(_text_of(value))
        w.blockSignals(False)

    def _edited(self, *_: Any) -> None:
        if self._loading:
            return
        self.preset_combo.setCurrentIndex(self.preset_combo.count() - 1)  # custom
        self._validate_timer.start()

    # -- config in and out ----------------------------------------------------------------
    def set_config(self, cfg: Config, *, preset: str = "") -> None:
        self._loading = True
        try:
            for section, values in cfg.to_dict().items():
                for key, value in values.items():
                    if f"{section}.{key}" in self.fields:
                        self._set_field(f"{section}.{key}", value)
        finally:
            self._loading = False
        index = self.preset_combo.findData(preset)
        self.preset_combo.setCurrentIndex(index if index >= 0 else self.preset_combo.count() - 1)
        self.validate()

    def load_preset(self, stem: str) -> None:
        self.set_config(load_config(preset_path(stem)), preset=stem)

    def apply_changes(self, changes: Mapping[str, Any]) -> None:
        """Fill fields with ``{"section.key": value}`` (a remedy or a pre-flight fix)."""
        self._loading = True
        try:
            for dotted, value in changes.items():
                if dotted in self.fields:
                    self._set_field(dotted, value)
        finally:
            self._loading = False
        self.preset_combo.setCurrentIndex(self.preset_combo.count() - 1)
        self.validate()

    def overrides(self) -> dict[str, Any]:
        return {dotted: self._field_value(dotted) for dotted in self.fields}

    def config(self) -> Config:
        """The form as a Config. Raises ConfigError naming the first bad key."""
        return load_config(overrides=self.overrides())

    def validate(self) -> bool:
        """Flag every invalid field; refresh the pre-flight list. True when all is valid."""
        values = self.overrides()
        errors: dict[str, str] = {}
        cfg = None
        for _ in range(len(values)):
            try:
                cfg = load_config(overrides=values)
                break
            except ConfigError as exc:
                keys = [k for k in _KEY_RE.findall(str(exc)) if k in values]
                if not keys:
                    errors["config"] = str(exc)
                    break
                errors[keys[0]] = str(exc).split(": ", 1)[-1]
                values[keys[0]] = self.defaults[keys[0]]
        self.errors = errors
        for dotted, w in self.fields.items():
            if dotted in errors:
                w.setStyleSheet(_INVALID_STYLE)
                w.setToolTip(f"<b style='color:#b00000'>{errors[dotted]}</b>")
            elif w.styleSheet():
                w.setStyleSheet("")
                w.setToolTip(f"<b>{dotted}</b><br>{self._help(dotted)}")
        if errors:
            self.error_label.setText("Fix the fields marked red: " + "; ".join(f"{k}: {v}" for k, v in errors.items()))
            self.error_label.show()
        else:
            self.error_label.hide()
        self._update_preflight(cfg if not errors else None)
        self.configChanged.emit()
        return not errors

    @staticmethod
    def _help(dotted: str) -> str:
        from core.config import HELP

        return HELP.get(dotted, "")

    def set_context(self, *, band_ranges: Any = None, device: Mapping[str, Any] | None = None) -> None:
        """What pre-flight needs besides the config: the data's band ranges, the device."""
        if band_ranges is not None:
            self.band_ranges = band_ranges
        if device is not None:
            self.device = device
        self._validate_timer.start()

    def _update_preflight(self, cfg: Config | None) -> None:
        while self.preflight_layout.count():
            item = self.preflight_layout.takeAt(0)
            if item.layout():
                while item.layout().count():
                    w = item.layout().takeAt(0).widget()
                    if w:
                        w.deleteLater()
            elif item.widget():
                item.widget().deleteLater()
        if cfg is None:
            self.preflight_layout.addWidget(QLabel("(fix the invalid fields first)"))
            return
        try:
            from core.preflight import preflight

            warnings = preflight(cfg, band_ranges=self.band_ranges or None, device=self.device)
        except Exception as exc:  # noqa: BLE001 - pre-flight is advice; never block the form
            warnings = []
            self.preflight_layout.addWidget(QLabel(f"pre-flight unavailable: {exc}"))
        self.preflight_warnings = warnings
        if not warnings:
            ok = QLabel("✓ no known risks in this configuration", objectName="preflightOk")
            ok.setStyleSheet("color: #2a7a2a;")
            self.preflight_layout.addWidget(ok)
        for w in warnings:
            row = QHBoxLayout()
            label = QLabel(f"⚠ {w.message}", objectName="preflightWarning")
            label.setWordWrap(True)
            label.setStyleSheet("color: #8a4b00;")
            row.addWidget(label, 1)
            if w.fix:
                fix = QPushButton("Fix")
                fix.setToolTip("Set " + ", ".join(f"{k} = {_text_of(v)}" for k, v in w.fix.items()))
                fix.clicked.connect(lambda _=False, c=dict(w.fix): self.apply_changes(c))
                row.addWidget(fix)
            self.preflight_layout.addLayout(row)

    # -- presets and files --------------------------------------------------------------
    def _preset_chosen(self, index: int) -> None:
        stem = self.preset_combo.itemData(index)
        if stem:
            self.load_preset(stem)

    def load_file(self, path: str | Path) -> None:
        self.set_config(load_config(path))

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load configuration", "", "TOML (*.toml)")
        if path:
            try:
                self.load_file(path)
            except ConfigError as exc:
                QMessageBox.warning(self, "Cannot load configuration", str(exc))

    def save_file(self, path: str | Path) -> None:
        Path(path).write_text(self.config().to_toml(), encoding="utf-8")

    def _save_dialog(self) -> None:
        if not self.validate():
            QMessageBox.warning(self, "Invalid configuration", "Fix the fields marked red before saving.")
            return
        path, _ = QFileDialog.getSaveFileName(self, "Save configuration", "tilewatch.toml", "TOML (*.toml)")
        if path:
            self.save_file(path)
