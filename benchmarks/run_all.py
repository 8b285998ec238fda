"""``make bench``: run every benchmark, one after another, and print their tables.

Benchmarks print ratios measured within one run (not timed tests); the figures
in docs/BENCHMARKS.md come from this command. Run on an otherwise idle machine:
other jobs on the same cores distort every ratio here.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    from benchmarks import detection, gui, pipeline, training

    for title, run in (
        ("Data pipeline (issue 2)", lambda: pipeline.main()),
        ("Training engine and monitor overhead (issues 3, 4)", lambda: training.main()),
        ("Collapse detection (issue 4)", lambda: detection.main([])),
        ("Desktop app (issue 5)", lambda: gui.main()),
    ):
        print(f"\n## {title}\n", flush=True)
        began = time.perf_counter()
        run()
        print(f"\n({time.perf_counter() - began:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
