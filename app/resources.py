"""Where the app's bundled files are, in a source checkout or a frozen build."""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["resource_root", "resource_path", "icon_path", "style_sheet"]


def resource_root() -> Path:
    """The ``resources`` folder: beside the packages, or under ``sys._MEIPASS`` when frozen."""
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        return Path(frozen) / "resources"
    return Path(__file__).resolve().parent.parent / "resources"


def resource_path(*parts: str) -> Path:
    return resource_root().joinpath(*parts)


def icon_path() -> Path | None:
    """The window icon (SVG first, then the largest PNG), or None if not installed."""
    svg = resource_path("icons", "tilewatch.svg")
    if svg.is_file():
        return svg
    pngs = sorted(resource_path("icons").glob("tilewatch*.png"), key=lambda p: p.stat().st_size)
    return pngs[-1] if pngs else None


def style_sheet() -> str:
    path = resource_path("style", "tilewatch.qss")
    try:
        return path.read_text(encoding="utf-8")
    except OSError:
        return ""
