"""Measure the app's start-up from source: when the main window is shown, and
whether TensorFlow starts importing before or after that (issue 6 wants the
window first).

    QT_QPA_PLATFORM=offscreen STARTUP_T0=$(date +%s.%N) .venv/bin/python installer/startup_probe.py [app args]

Prints one JSON line and exits (it does not wait for training):
  window_shown_s       process start -> first Expose of the main window (seconds)
  tf_import_s          process start -> first ``import tensorflow`` (or null)
  tf_import_thread     the thread that imported it
  tf_before_window     True when TensorFlow began importing before the window was shown
STARTUP_T0 (unix seconds, set by the caller just before launching) makes the
figures include interpreter start-up; without it they start at this script.
STARTUP_DEFER_DEVICE_PROBE=1 is an experiment: it holds app.worker.DeviceProbe
(the thread that imports TensorFlow) until the window is shown, to show what
starting it after the first Expose would give.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

T0 = float(os.environ.get("STARTUP_T0") or time.time())
WAIT_FOR_TF_S = float(os.environ.get("STARTUP_WAIT_FOR_TF_S", "30"))
seen: dict[str, object] = {}


def _since_start() -> float:
    return round(time.time() - T0, 3)


def _audit(event: str, args: tuple) -> None:
    if event == "import" and args[0] == "tensorflow" and "tf_import_s" not in seen:
        seen["tf_import_s"] = _since_start()
        seen["tf_import_thread"] = threading.current_thread().name


def _finish() -> None:
    result = {
        "window_shown_s": seen.get("window_shown_s"),
        "tf_import_s": seen.get("tf_import_s"),
        "tf_import_thread": seen.get("tf_import_thread"),
    }
    shown, tf = result["window_shown_s"], result["tf_import_s"]
    result["tf_before_window"] = None if shown is None else (tf is not None and tf < shown)
    print(json.dumps(result), flush=True)
    os._exit(0)  # a probe: do not wait for the app's threads


def main() -> None:
    sys.addaudithook(_audit)
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    sys.path.insert(0, root)

    from PySide6.QtCore import QEvent, QObject, QTimer
    from PySide6.QtGui import QWindow
    from PySide6.QtWidgets import QMainWindow

    import app.cli

    deferred: list = []
    if os.environ.get("STARTUP_DEFER_DEVICE_PROBE") == "1":
        import app.worker

        real_start = app.worker.DeviceProbe.start

        def held_start(probe) -> None:
            deferred.append(lambda: real_start(probe))

        app.worker.DeviceProbe.start = held_start

    class _ShownFilter(QObject):
        def eventFilter(self, obj, event):  # noqa: N802 (Qt's name)
            # the first Expose of a top-level window (the main window's QWindow),
            # or the main window's first Paint where a platform skips Expose
            kind = event.type()
            shown = (kind == QEvent.Type.Expose and isinstance(obj, QWindow)) or (
                kind == QEvent.Type.Paint and isinstance(obj, QMainWindow)
            )
            if shown and "window_shown_s" not in seen:
                seen["window_shown_s"] = _since_start()
                for start in deferred:
                    QTimer.singleShot(0, start)
                deadline = time.time() + WAIT_FOR_TF_S

                def wait_for_tf() -> None:
                    if "tf_import_s" in seen or time.time() > deadline:
                        _finish()
                    QTimer.singleShot(100, wait_for_tf)

                QTimer.singleShot(0, wait_for_tf)
            return False

    real_make_application = app.cli.make_application
    keep: list[QObject] = []

    def make_application(*args, **kwargs):
        qapp = real_make_application(*args, **kwargs)
        if not keep:
            keep.append(_ShownFilter())
            qapp.installEventFilter(keep[0])
        return qapp

    app.cli.make_application = make_application
    threading.Timer(WAIT_FOR_TF_S + 60, _finish).start()  # never hang
    from app.__main__ import main as app_main

    app_main(sys.argv[1:])
    _finish()


if __name__ == "__main__":
    main()
