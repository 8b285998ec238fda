"""Fast view tests against fabricated run directories (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from app import imaging
from app.runstate import ColumnBuffer

OBJECT_NAMES = ["dataPathEdit", "startButton", "pauseButton", "stopButton", "lossPlot",
                "signalPlot", "epochSlider", "inspectorView", "eventList"]


def test_stable_object_names_exist(window):
    from PySide6.QtWidgets import QWidget

    for name in OBJECT_NAMES:
        assert window.findChild(QWidget, name) is not None, name


def test_open_collapsed_run_shows_marker_diagnosis_and_before_after(window, collapsed_run):
    assert window.open_run(collapsed_run)
    loss = window.loss_plot
    assert loss.saturation_line is not None
    assert loss.saturation_line.value() == pytest.approx(23)
    assert loss.saturation_band.getRegion() == pytest.approx((23, 26))
    assert "outputs saturated at step 23, epoch 3" in loss.saturation_line.label.toPlainText()
    tree = window.event_panel.tree
    current = tree.currentItem()
    assert current is not None and current.text(0) == "SATURATION"
    assert "pinned at 0" in window.event_panel.details.toPlainText()
    assert len(window.event_panel.remedy_buttons) == 2
    insp = window.inspector
    assert insp.before_after.isChecked()
    assert insp._before.label == "epoch 2"
    assert insp._after.kind == "step" and insp._after.index == 26
    assert window.inspector.slider.maximum() == len(window.state.snapshots) - 1 == 4
    # the collapsed prediction's histogram has all its mass at p = 0
    assert insp.wait_rendered()
    assert insp.after_row.hist_fraction[0] == pytest.approx(1.0)
    assert insp.after_row.images[2].image is not None  # the probability panel is drawn (off the GUI thread)
    assert "collapsed" in window.run_title.text()


def test_marker_click_jumps_inspector(window, collapsed_run):
    window.open_run(collapsed_run)
    window.inspector.before_after.setChecked(False)
    window.loss_plot.markerClicked.emit(12.0)  # a warning in epoch 2
    assert window.inspector.before_after.isChecked()
    assert window.inspector._before.label == "epoch 1"
    assert window.inspector._after.label == "epoch 2"


def test_apply_remedy_fills_config_and_offers_a_run_from_the_healthy_checkpoint(window, collapsed_run, monkeypatch):
    window.open_run(collapsed_run)
    asked = []
    started = {}
    window.ask = lambda title, text: asked.append(text) or True
    monkeypatch.setattr(window, "start_run", lambda **kw: started.update(kw) or True)
    window.event_panel.remedy_buttons[0].click()
    assert window.config_panel.config().train.learning_rate == pytest.approx(0.001)
    assert "epoch-0002.keras" in asked[0]
    assert started["init_checkpoint"] == collapsed_run / "checkpoints" / "epoch-0002.keras"
    assert started["parent_run"] == {"run": str(collapsed_run), "checkpoint": str(collapsed_run / "checkpoints" / "epoch-0002.keras")}


def test_healthy_run_has_no_saturation_marker_and_overlay(window, healthy_run, collapsed_run, tmp_path):
    window.open_run(healthy_run)
    assert window.loss_plot.saturation_line is None
    assert window.state.saturation() is None
    assert window.overlay_run(collapsed_run)
    assert len(window.loss_plot._overlays) == 2
    written = window.export_plots(tmp_path / "plot.png")
    assert all(p.stat().st_size > 1000 for p in written)
    svg = window.export_plots(tmp_path / "plot.svg")
    assert svg[0].read_text().lstrip().startswith("<?xml")


def test_log_scale_toggle(window, collapsed_run):
    window.open_run(collapsed_run)
    window.log_check.setChecked(True)
    assert window.loss_plot.log_scale()
    window.log_check.setChecked(False)
    assert not window.loss_plot.log_scale()


def test_config_field_flagged_and_start_refused(window):
    panel = window.config_panel
    field = panel.fields["train.learning_rate"]
    field.setText("-1")
    panel.validate()
    assert "train.learning_rate" in panel.errors
    assert "red" in field.styleSheet() or "#d62728" in field.styleSheet()
    assert not window.start_run()
    assert "marked red" in window.status_label.text()
    field.setText("0.001")
    assert panel.validate()
    # cross-field rule (patch size vs depth) is flagged at the field core names
    panel.fields["data.patch_size"].setText("100")
    panel.validate()
    assert "data.patch_size" in panel.errors


def test_presets_and_toml_round_trip(window, tmp_path):
    panel = window.config_panel
    stems = [panel.preset_combo.itemData(i) for i in range(panel.preset_combo.count())]
    assert {"default", "demo", "seed", "collapse"} <= set(stems)
    panel.load_preset("seed")
    assert panel.config().train.optimizer == "sgd"
    assert panel.preflight_warnings  # the seed's set-up has known risks
    path = tmp_path / "c.toml"
    panel.save_file(path)
    panel.load_preset("default")
    panel.load_file(path)
    assert panel.config().train.jaccard_smooth == pytest.approx(1e-12)


def test_data_panel_check_problems_preview_and_recent(window, tmp_path, tiny_data):
    dp = window.data_panel
    bad = tmp_path / "bad"
    (bad / "images").mkdir(parents=True)
    (bad / "masks").mkdir()
    (bad / "images" / "a.tif").write_bytes(b"not a tiff")
    assert not dp.set_folder(bad)
    assert dp.problems and "masks" in dp.summary.toPlainText() and "problem" in dp.summary.toPlainText()
    assert dp.set_folder(tiny_data)
    assert "tiles:" in dp.summary.toPlainText()
    assert dp.image_item.image is not None and dp.image_item.image.shape[-1] == 3
    first = dp.tile_combo.currentText()
    dp.step_tile(+1)
    assert dp.tile_combo.currentText() != first
    assert str(tiny_data) == dp.recent()[0]


def test_worker_exception_is_shown_and_app_lives(window, tiny_data, qtbot):
    window.data_panel.set_folder(tiny_data)
    window.config_panel.load_preset("demo")

    def boom():
        raise RuntimeError("injected failure in the worker")

    window.callbacks_factory = boom
    with qtbot.waitSignal(window.runFinished, timeout=120_000) as sig:
        assert window.start_run()
    assert sig.args == ["failed"]
    assert "injected failure" in window.status_label.text()
    assert window.event_panel.tree.topLevelItem(window.event_panel.tree.topLevelItemCount() - 1).text(0) == "error"
    assert window.start_button.isEnabled() and not window.is_running()


def test_imaging_exact_values():
    band = np.arange(101, dtype=np.float32)
    s = imaging.stretch(band, 0, 100)
    assert s[0] == 0 and s[-1] == 1 and s[50] == pytest.approx(0.5)
    pred = np.array([[True, False], [True, False]])
    mask = np.array([[True, True], [False, False]])
    d = imaging.difference_rgb(pred, mask)
    assert tuple(d[0, 1]) == imaging.FN_COLOR and tuple(d[1, 0]) == imaging.FP_COLOR
    assert tuple(d[1, 1]) == (0, 0, 0)
    soft = np.array([[[0.7, 0.2, 0.1]]], np.float32)
    assert imaging.probability_map(soft)[0, 0] == pytest.approx(0.3)


def test_column_buffer_grows():
    buf = ColumnBuffer()
    for i in range(3000):
        buf.extend_rows([{"step": i, "loss": 1.0}])
    buf.extend_rows([{"step": 3000, "grad_norm": 2.0}])
    assert len(buf) == 3001
    assert buf.get("step")[-1] == 3000 and np.isnan(buf.get("loss")[-1])
    assert np.isnan(buf.get("grad_norm")[0])


def test_open_run_rescans_its_data_and_previews_a_probe_tile(window, collapsed_run):
    assert window.data_panel.dataset is None
    assert window.open_run(collapsed_run)
    panel = window.data_panel
    assert panel.dataset is not None, panel.summary.toPlainText()
    assert panel.folder() == Path(window.state.info["data_dir"])
    assert panel.tile_combo.count() == 2 and panel.tile_combo.currentText() == "t0"
    assert panel._image is not None  # the preview shows the run's tile


def test_loss_export_includes_the_legend_row(window, collapsed_run, tmp_path):
    from PySide6.QtGui import QImage

    window.open_run(collapsed_run)
    png, signals = window.export_plots(tmp_path / "loss.png")
    image = QImage(str(png))
    assert image.height() == 2 * window.loss_panel.height() > 2 * window.loss_plot.height()
    assert QImage(str(signals)).width() == 2 * window.signal_plot.width()
    svg, _ = window.export_plots(tmp_path / "loss.svg")
    assert "batch" in svg.read_text() and "saturation" in svg.read_text()


def test_sticky_range_moves_rarely_while_live_and_yields_to_the_user(qtbot):
    import pyqtgraph as pg

    from app.plots import StickyRange

    widget = pg.PlotWidget()
    qtbot.addWidget(widget)
    view = widget.getPlotItem().getViewBox()
    sticky = StickyRange(view)
    sticky.update(37, 0.2, 1.5, live=True)
    (x0, x1), (y0, y1) = view.viewRange()
    assert x1 == 50 and y0 < 0.2 and y1 > 1.5  # the next 1-2-5 count, with headroom
    refits = sticky.refits
    for step in range(38, 46):  # new steps and a lower loss inside the view: no refit
        sticky.update(step, 0.15, 1.5, live=True)
    assert sticky.refits == refits
    sticky.update(51, 0.15, 1.5, live=True)
    assert view.viewRange()[0][1] == 100 and sticky.refits == refits + 1
    sticky.update(51, 0.15, 1.5, live=False)  # the run ended: fit the data exactly
    assert view.viewRange()[0][1] == pytest.approx(51 * 1.015)
    sticky._user_moved()  # the user zoomed: stop following until "Fit view"
    sticky.update(500, 0.1, 1.5, live=True)
    assert view.viewRange()[0][1] < 100
    sticky.fit()
    sticky.update(500, 0.1, 1.5, live=True)
    assert view.viewRange()[0][1] == 1000
