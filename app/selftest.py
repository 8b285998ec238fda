"""``tilewatch --selftest``: open the window offscreen, train one tiny step, check the run.

Used on built installers: exit 0 when all works; otherwise print what failed
and exit 1.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

TINY = {
    "data.patch_size": 32,
    "model.depth": 2,
    "model.base_filters": 4,
    "train.epochs": 1,
    "train.steps_per_epoch": 1,
    "train.batch_size": 2,
    "monitor.probe_tiles": 1,
}


def _report(text: str) -> None:
    if sys.stdout is not None:
        print(text, flush=True)
    import logging

    logging.getLogger("tilewatch.selftest").info(text)


def run_selftest(timeout_s: float = 300.0) -> int:
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    t0 = time.monotonic()
    failures: list[str] = []
    try:
        from PySide6.QtCore import QEventLoop, QTimer

        from app.cli import make_application
        from app.window import MainWindow
        from core.config import load_config, preset_path
        from core.runstore import read_run
        from core.synthetic import make_dataset

        app = make_application()
        with tempfile.TemporaryDirectory(prefix="tilewatch-selftest-") as tmp:
            data = Path(tmp) / "tiles"
            make_dataset(data, tiles=4, size=48, seed=1)
            window = MainWindow(workspace=Path(tmp) / "runs", probe_device=False)
            window.show()
            _report("selftest: window shown")
            if not window.data_panel.set_folder(data, remember=False):
                failures.append("the generated tiles did not pass the data check: " + window.data_panel.summary.toPlainText())
            else:
                window.config_panel.set_config(load_config(preset_path("demo"), overrides=TINY))
                run_dir = Path(tmp) / "runs" / "selftest"
                window.next_run_dir = run_dir
                status: dict[str, str] = {}
                loop = QEventLoop()
                window.runFinished.connect(lambda s: (status.setdefault("s", s), loop.quit()))
                if not window.start_run():
                    failures.append("the run did not start: " + window.status_label.text())
                else:
                    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
                    loop.exec()
                    if "s" not in status:
                        failures.append(f"the run did not finish within {timeout_s:.0f} s")
                        window.shutdown()
                    elif status["s"] == "failed":
                        failures.append(f"the run failed: {window.last_error}")
                    else:
                        record = read_run(run_dir)
                        if not len(record.steps.get("step", [])):
                            failures.append("the run wrote no steps.csv rows")
                        if not (run_dir / "checkpoints" / "last.keras").is_file():
                            failures.append("the run wrote no checkpoint")
                        _report(f"selftest: run {status['s']}, {len(record.steps.get('step', []))} step(s) in {run_dir.name}")
            window.close()
            app.processEvents()
    except Exception:  # noqa: BLE001 - the self-test reports every failure
        failures.append(traceback.format_exc())
    if failures:
        _report("selftest FAILED:\n" + "\n".join(f"  - {f}" for f in failures))
        return 1
    _report(f"selftest passed in {time.monotonic() - t0:.1f} s")
    return 0
