"""Desktop app benchmark (issue 5): event-loop latency during training and the
step-time cost of the GUI.

- latency: a 10 ms QTimer runs in the GUI thread while the demo trains in the
  worker; its lateness (actual - expected interval) is recorded; goal p99 <= 50 ms.
- overhead: median step time (from steps.csv) with the window attached vs the
  same config trained headless with core.trainer.Trainer; goal <= 1.05x.

Run: QT_QPA_PLATFORM=offscreen python benchmarks/gui.py
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BENCH = {"train.epochs": 3, "train.steps_per_epoch": 40, "train.patience": 0, "monitor.probe_tiles": 2}


def _median_step_time(run_dir: Path) -> float:
    from core.runstore import read_run

    t = read_run(run_dir).steps["time"]
    dt = np.diff(t)[5:]  # skip graph tracing
    return float(np.median(dt))


def _headless(data: Path, out: Path) -> float:
    from core.config import load_config, preset_path
    from core.trainer import Trainer

    cfg = load_config(preset_path("demo"), overrides=BENCH)
    Trainer(cfg, data_dir=data, run_dir=out).run()
    return _median_step_time(out)


def _with_gui(data: Path, out: Path) -> tuple[float, list[float]]:
    from PySide6.QtCore import QElapsedTimer, QEventLoop, QTimer

    from app.cli import make_application
    from app.window import MainWindow
    from core.config import load_config, preset_path

    app = make_application()
    win = MainWindow(workspace=out.parent, probe_device=False)
    win.show()
    win.data_panel.set_folder(data, remember=False)
    win.config_panel.set_config(load_config(preset_path("demo"), overrides=BENCH))
    win.next_run_dir = out
    lateness: list[float] = []
    clock = QElapsedTimer()
    clock.start()
    last = [clock.elapsed()]

    def tick() -> None:
        now = clock.elapsed()
        if win.state.steps and len(win.state.steps) > 5:  # measure during training proper
            lateness.append(max(0.0, now - last[0] - 10.0))
        last[0] = now

    timer = QTimer(interval=10)
    timer.setTimerType(timer.timerType().PreciseTimer)
    timer.timeout.connect(tick)
    timer.start()
    loop = QEventLoop()
    win.runFinished.connect(lambda _s: loop.quit())
    win.start_run()
    loop.exec()
    timer.stop()
    win.close()
    app.processEvents()
    return _median_step_time(out), lateness


def main() -> dict[str, float]:
    from core.synthetic import make_dataset

    with tempfile.TemporaryDirectory(prefix="tilewatch-bench-gui-") as tmp:
        data = Path(tmp) / "tiles"
        make_dataset(data, tiles=16, size=160, seed=7, empty_fraction=0.1)
        t0 = time.perf_counter()
        gui_step, lateness = _with_gui(data, Path(tmp) / "runs" / "gui")
        headless_step = _headless(data, Path(tmp) / "runs" / "headless")
        wall = time.perf_counter() - t0
    late = np.asarray(lateness or [float("nan")])
    results = {
        "timer_lateness_p50_ms": float(np.percentile(late, 50)),
        "timer_lateness_p99_ms": float(np.percentile(late, 99)),
        "timer_lateness_max_ms": float(np.max(late)),
        "step_time_gui_ms": gui_step * 1000,
        "step_time_headless_ms": headless_step * 1000,
        "gui_overhead_ratio": gui_step / headless_step,
        "wall_s": wall,
    }
    print("| Desktop app (issue 5) | value | goal |")
    print("| --- | --- | --- |")
    print(f"| event-loop lateness p50 (10 ms timer) | {results['timer_lateness_p50_ms']:.1f} ms | |")
    print(f"| event-loop lateness p99 | {results['timer_lateness_p99_ms']:.1f} ms | <= 50 ms |")
    print(f"| event-loop lateness max | {results['timer_lateness_max_ms']:.1f} ms | |")
    print(f"| median step time, GUI attached | {results['step_time_gui_ms']:.1f} ms | |")
    print(f"| median step time, headless | {results['step_time_headless_ms']:.1f} ms | |")
    print(f"| GUI / headless step time | {results['gui_overhead_ratio']:.3f}x | <= 1.05x |")
    return results


if __name__ == "__main__":
    main()
