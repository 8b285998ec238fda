"""Time a built Tilewatch from launch to its first screenshot of a past run.

    python3 installer/time_to_screenshot.py dist/tilewatch/tilewatch RUN [--repeat 5]

For the frozen build, where startup_probe.py cannot hook in. Each launch is
``PROGRAM --open RUN --screenshot PNG`` with QT_QPA_PLATFORM=offscreen and a
private XDG home; the app grabs the window 600 ms after it set itself up on the
opened run and quits 300 ms later (app/cli.py). Reported per launch:
  to_png_s        launch -> the PNG exists (includes the app's fixed 0.6 s wait)
  window_est_s    to_png_s - 0.6: an upper bound of launch -> window shown
  exit_s          launch -> process exit
The first launch is the cold one (file cache permitting); the rest are warm.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

SCREENSHOT_DELAY_S = 0.6  # app/cli.py: QTimer.singleShot(600, save_screenshot) after --open


def one_launch(program: str, run: str, scratch: Path, index: int) -> dict[str, float]:
    png = scratch / f"shot-{index}.png"
    env = {
        **os.environ,
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_DATA_HOME": str(scratch / "data"),
        "XDG_STATE_HOME": str(scratch / "state"),
        "XDG_CONFIG_HOME": str(scratch / "config"),
        "XDG_CACHE_HOME": str(scratch / "cache"),
    }
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [program, "--open", run, "--screenshot", str(png)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    to_png = None
    while proc.poll() is None and time.perf_counter() - t0 < 120:
        if to_png is None and png.exists():
            to_png = time.perf_counter() - t0
        time.sleep(0.01)
    if proc.poll() is None:
        proc.kill()
    proc.wait()
    exit_s = time.perf_counter() - t0
    if to_png is None and png.exists():
        to_png = exit_s
    result = {"exit_code": proc.returncode, "exit_s": round(exit_s, 2)}
    if to_png is not None:
        result["to_png_s"] = round(to_png, 2)
        result["window_est_s"] = round(to_png - SCREENSHOT_DELAY_S, 2)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("program")
    parser.add_argument("run")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tilewatch-startup-") as tmp:
        launches = [one_launch(args.program, args.run, Path(tmp), i) for i in range(args.repeat)]
    for i, launch in enumerate(launches):
        print(json.dumps({"launch": i + 1, **launch}))
    warm = [launch["window_est_s"] for launch in launches[1:] if "window_est_s" in launch]
    if warm:
        print(json.dumps({"warm_window_est_s_median": round(statistics.median(warm), 2), "warm_launches": len(warm)}))


if __name__ == "__main__":
    main()
