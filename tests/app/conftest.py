"""Fixtures for the app tests: isolated user folders, no QThread left running,
fabricated run directories (fast) and a tiny real dataset (for real runs)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Isolate QSettings, the workspace and the log folder before Qt or platformdirs read them.
_HOME = Path(tempfile.mkdtemp(prefix="tilewatch-apptests-"))
for _var in ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME"):
    os.environ[_var] = str(_HOME / _var.lower())
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from PySide6.QtCore import QThread  # noqa: E402

from tests.app.fabricate import fabricate_run  # noqa: E402

# The offscreen platform says this on every shown window; it is not our warning.
_PLATFORM_NOISE = ["This plugin does not support propagateSizeHints", "propagateSizeHints"]


def pytest_collection_modifyitems(items):
    for item in items:
        item.add_marker(pytest.mark.qt_log_ignore(*_PLATFORM_NOISE))


@pytest.fixture(autouse=True)
def no_thread_left_running(qapp):
    """Fail any test that leaves a QThread running (napari's fixture)."""
    qapp.setOrganizationName("tilewatch-tests")
    qapp.setApplicationName("tilewatch-tests")
    before = set()
    yield
    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    leftover = [t for t in qapp.findChildren(QThread) if t.isRunning()]
    from app.window import MainWindow

    for w in QApplication.topLevelWidgets():
        if isinstance(w, MainWindow) and w.is_running():
            w.shutdown()
            leftover.append(w.controller)
    assert not leftover and not before, f"test left QThread(s) running: {leftover}"


@pytest.fixture
def window(qtbot, tmp_path):
    from app.window import MainWindow

    win = MainWindow(workspace=tmp_path / "runs", probe_device=False)
    qtbot.addWidget(win)
    win.ask = lambda *a: False
    win.confirm_close = lambda: True
    win.show()
    yield win
    win.shutdown()
    win.close()
    # pyqtgraph's scene graphs hold reference cycles; collect them while Qt is
    # idle rather than at a random later point (pyqtgraph issue #1628).
    import gc

    from PySide6.QtWidgets import QApplication

    QApplication.processEvents()
    gc.collect()


@pytest.fixture
def collapsed_run(tmp_path) -> Path:
    return fabricate_run(tmp_path / "run-collapsed", collapse=True)


@pytest.fixture
def healthy_run(tmp_path) -> Path:
    return fabricate_run(tmp_path / "run-healthy", collapse=False)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    from core.synthetic import make_dataset

    out = tmp_path_factory.mktemp("tiles")
    make_dataset(out, tiles=6, size=64, seed=3)
    return out
