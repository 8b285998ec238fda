"""Real (tiny) training runs through the window, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TINY = {
    "data.patch_size": 64, "model.depth": 2, "model.base_filters": 4, "train.batch_size": 4,
    "train.epochs": 3, "train.steps_per_epoch": 10, "train.optimizer": "adam", "train.learning_rate": 1e-3,
    "train.patience": 0, "monitor.policy": "mark", "monitor.probe_tiles": 1,
}
PIN_AT_STEP = 10


def pin_logits_callback():
    """A Keras callback that pins the output at 0 from PIN_AT_STEP on (bias -50): a forced collapse."""
    import keras

    class PinLogits(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.step = 0

        def on_train_batch_begin(self, batch, logs=None):
            if self.step >= PIN_AT_STEP:
                layer = _find_layer(self.model, "logits")
                layer.bias.assign(layer.bias * 0.0 - 50.0)
            self.step += 1

    return [PinLogits()]


def _find_layer(model, name):
    # the Trainer may wrap the U-Net in an outer model: search nested models too
    for layer in model.layers:
        if layer.name == name:
            return layer
        if hasattr(layer, "layers"):
            found = _find_layer(layer, name)
            if found is not None:
                return found
    return None


@pytest.mark.slow
def test_real_run_through_the_window_marks_the_saturation(window, tiny_data, qtbot):
    from core.config import load_config, preset_path

    window.data_panel.set_folder(tiny_data)
    window.config_panel.set_config(load_config(preset_path("demo"), overrides=TINY))
    window.callbacks_factory = pin_logits_callback
    with qtbot.waitSignal(window.runFinished, timeout=240_000) as sig:
        assert window.start_run()
        qtbot.waitUntil(lambda: len(window.state.steps) > 0, timeout=200_000)
        qtbot.waitUntil(lambda: window.progress.format().startswith("epoch"), timeout=5_000)
    assert sig.args[0] != "failed", window.last_error
    sat = window.state.saturation()
    assert sat is not None, [(e.type, e.step, getattr(e, "message", "")) for e in window.state.events]
    assert PIN_AT_STEP <= sat.onset_step <= PIN_AT_STEP + 3
    assert window.loss_plot.saturation_line is not None
    assert window.loss_plot.saturation_line.value() == pytest.approx(sat.onset_step)
    assert window.event_panel.tree.currentItem().text(0) == "SATURATION"
    assert window.event_panel.remedy_buttons
    before, after = window.inspector._before, window.inspector._after
    assert after is not None and window.inspector.before_after.isChecked()
    run = json.loads((window.state.run_dir / "run.json").read_text())
    assert run["saturation"]["onset_step"] == sat.onset_step


def _app(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    return subprocess.run([sys.executable, "-m", "app", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("args, needle", [
    (["--config", "/nonexistent.toml"], "config file not found"),
    (["--set", "train.nope=1"], "unknown key"),
    (["--set", "train.learning_rate=-1"], "train.learning_rate"),
    (["--open", "/tmp"], "not a Tilewatch run"),
    (["--data", "/nonexistent-dir"], "no such folder"),
])
def test_bad_input_exits_2_without_traceback(args, needle):
    proc = _app(*args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_open_finished_run_with_screenshot(collapsed_run, tmp_path):
    shot = tmp_path / "s.png"
    proc = _app("--open", str(collapsed_run), "--screenshot", str(shot))
    assert proc.returncode == 0, proc.stderr
    assert shot.stat().st_size > 20_000


@pytest.mark.slow
def test_selftest_subprocess_trains_one_step_and_exits_0(tmp_path):
    # run from a foreign folder, as an installed launcher would, with no display set
    env = {k: v for k, v in os.environ.items() if k not in ("QT_QPA_PLATFORM", "DISPLAY")}
    proc = subprocess.run([sys.executable, "-m", "app", "--selftest"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "selftest passed" in proc.stdout
    assert "1 step(s)" in proc.stdout


def test_selftest_names_what_failed(qapp, monkeypatch, capsys):
    import core.synthetic
    from app.selftest import run_selftest

    def no_tiles(folder, **_):  # a dataset generator that writes no tiles: the data check must fail
        (Path(folder) / "images").mkdir(parents=True)
        (Path(folder) / "masks").mkdir()

    monkeypatch.setattr(core.synthetic, "make_dataset", no_tiles)
    assert run_selftest(timeout_s=30) == 1
    out = capsys.readouterr().out
    assert "selftest FAILED" in out
    assert "did not pass the data check" in out
