"""Command-line handling of the GUI (DESIGN.md "GUI automation").

Bad input (a bad --config, --set or --data, --open on a folder that is not a
run) is a clear message on stderr and exit code 2, checked before any window
opens. The exit code is 0 when the run ended in any status but failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from app import APP_NAME

__all__ = ["build_parser", "run", "demo_data_dir", "ensure_demo_data"]

log = logging.getLogger("tilewatch")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # exit 2 with a message, as argparse does, but never to a None stderr
        _say(f"{self.prog}: {message}\n{self.format_usage()}")
        raise SystemExit(2)


def _say(text: str) -> None:
    if sys.stderr is not None:
        print(text, file=sys.stderr)
    log.error(text)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="tilewatch", description="Tilewatch: train U-Nets on multi-channel TIFF tiles and watch for collapse.")
    p.add_argument("--data", metavar="DIR", help="tile folder (images/ and masks/)")
    p.add_argument("--config", metavar="FILE", help="TOML configuration")
    p.add_argument("--set", metavar="KEY=VALUE", action="append", default=[], dest="overrides", help="override a config key (repeatable)")
    p.add_argument("--run-dir", metavar="RUN", help="folder of the next run (default: a new folder in the workspace)")
    p.add_argument("--open", metavar="RUN", help="open a past run")
    p.add_argument("--demo", action="store_true", help="the demo data and the demo preset")
    p.add_argument("--autostart", action="store_true", help="start training at once")
    p.add_argument("--quit-when-done", action="store_true", help="quit when the run ends (exit 0 unless it failed)")
    p.add_argument("--screenshot", metavar="PNG", help="save the window when the run ends (at once with --open)")
    p.add_argument("--selftest", action="store_true", help="open the window offscreen, train one tiny step, exit 0 if all works")
    return p


def demo_data_dir() -> Path:
    from platformdirs import user_data_dir

    return Path(user_data_dir(APP_NAME)) / "demo-data"


def ensure_demo_data(folder: Path | None = None) -> Path:
    """Generate the demo tiles once (deterministic), then reuse them."""
    folder = folder or demo_data_dir()
    if not (folder / ".complete").is_file():
        from core.synthetic import make_dataset

        folder.mkdir(parents=True, exist_ok=True)
        make_dataset(folder, tiles=16, size=160, seed=7, empty_fraction=0.1)
    return folder


def _check_args(args: argparse.Namespace) -> tuple[Any, dict[str, Any]] | str:
    """Validate what can be validated before a window opens; a str is the error."""
    from core.config import ConfigError, load_config, parse_override, preset_path
    from core.runstore import is_run_dir

    overrides: dict[str, Any] = {}
    try:
        for text in args.overrides:
            key, value = parse_override(text)
            overrides[key] = value
        path = args.config or (preset_path("demo") if args.demo else None)
        cfg = load_config(path, overrides=overrides)
    except ConfigError as exc:
        return str(exc)
    if args.open and not is_run_dir(args.open):
        return f"--open {args.open}: not a Tilewatch run (no run.json)"
    if args.data and not Path(args.data).is_dir():
        return f"--data {args.data}: no such folder"
    if args.run_dir and is_run_dir(args.run_dir):
        return f"--run-dir {args.run_dir}: already holds a run; choose a new folder"
    if args.autostart and not (args.data or args.demo):
        return "--autostart needs --data DIR or --demo"
    if args.screenshot and not Path(args.screenshot).resolve().parent.is_dir():
        return f"--screenshot {args.screenshot}: the folder does not exist"
    return cfg, overrides


def run(argv: list[str]) -> int:
    from app.logs import setup_logging

    setup_logging()
    args = build_parser().parse_args(argv)
    if args.selftest:
        from app.selftest import run_selftest

        return run_selftest()
    checked = _check_args(args)
    if isinstance(checked, str):
        _say(f"tilewatch: {checked}")
        return 2
    cfg, _ = checked
    return _run_gui(args, cfg)


def make_application(argv: list[str] | None = None):
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(argv or [sys.argv[0]])
    app.setOrganizationName(APP_NAME)
    app.setApplicationName(APP_NAME)
    app.setApplicationDisplayName("Tilewatch")
    app.setDesktopFileName("tilewatch")  # matches resources/tilewatch.desktop (Wayland, task bars)
    from app.resources import style_sheet

    app.setStyleSheet(style_sheet())
    return app


def _run_gui(args: argparse.Namespace, cfg: Any) -> int:
    from PySide6.QtCore import QTimer

    from app.window import MainWindow

    app = make_application()
    window = MainWindow()
    window.show()
    exit_code = {"code": 0}

    def save_screenshot() -> None:
        if args.screenshot:
            window.refresh(force=True)
            window.inspector.wait_rendered()
            app.processEvents()
            window.grab().save(args.screenshot)
            log.info("screenshot saved to %s", args.screenshot)

    def finished(status: str) -> None:
        exit_code["code"] = 1 if status == "failed" else 0
        if args.screenshot:
            QTimer.singleShot(400, save_screenshot)  # let the last redraw land
        if args.quit_when_done:
            QTimer.singleShot(800, lambda: app.exit(exit_code["code"]))

    window.runFinished.connect(finished)

    def setup() -> None:
        preset = "demo" if args.demo and not args.config else ""
        window.config_panel.set_config(cfg, preset=preset if not args.overrides else "")
        data = args.data
        if args.demo and not data:
            window._show_status("Preparing the demo tiles (first use only)…")
            app.processEvents()
            data = str(ensure_demo_data())
        if data:
            window.data_panel.set_folder(data)
        if args.run_dir:
            window.next_run_dir = Path(args.run_dir)
        if args.open:
            window.open_run(args.open)
            if args.screenshot:
                QTimer.singleShot(600, save_screenshot)
                QTimer.singleShot(900, app.quit)  # a screenshot of a past run is a one-shot job
            return
        if args.autostart and not window.start_run():
            _say(f"tilewatch: cannot start: {window.status_label.text()}")
            exit_code["code"] = 2
            if args.quit_when_done:
                app.exit(2)

    QTimer.singleShot(0, setup)
    code = app.exec()
    window.shutdown()
    return exit_code["code"] if code == 0 else code


os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
