"""``python -m app`` / the ``tilewatch`` launcher: the GUI and its automation flags.

Safe when frozen: ``multiprocessing.freeze_support()`` runs first, and in a
windowed build (stdout/stderr are None) everything goes to the log file.
"""

from __future__ import annotations

import multiprocessing
import sys


def main(argv: list[str] | None = None) -> int:
    multiprocessing.freeze_support()
    from app.cli import run

    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    raise SystemExit(main())
