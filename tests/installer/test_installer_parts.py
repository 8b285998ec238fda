"""Fast checks of the installer parts (issue 6); the PyInstaller build itself is
``make installer`` and never runs here.

Covers: the spec (one-folder, windowed, no UPX, other Qt bindings excluded,
resources placed where core and app look for them), the .desktop entry, the
icons, and an install/uninstall round trip of a fake one-folder build into a
temporary XDG_DATA_HOME.
"""

from __future__ import annotations

import ast
import configparser
import os
import shlex
import shutil
import struct
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALLER = ROOT / "installer"
SPEC = INSTALLER / "tilewatch.spec"
DESKTOP = ROOT / "resources" / "tilewatch.desktop"
ICONS = ROOT / "resources" / "icons"
ICON_SIZES = (16, 32, 48, 64, 128, 256, 512)
SCRIPTS = ("install.sh", "uninstall.sh", "build.sh", "render_icons.sh")

needs_bash = pytest.mark.skipif(
    sys.platform == "win32" or shutil.which("bash") is None, reason="the install scripts are bash (Linux)"
)


# ---------------------------------------------------------------- the spec


def _spec_tree() -> ast.Module:
    return ast.parse(SPEC.read_text(encoding="utf-8"), filename=str(SPEC))


def _calls(tree: ast.Module, name: str) -> list[ast.Call]:
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {kw.arg: kw.value for kw in call.keywords if kw.arg}


def _assigned(tree: ast.Module, name: str) -> ast.expr:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node.value
    raise AssertionError(f"the spec assigns no {name}")


def test_spec_is_one_folder_windowed_without_upx() -> None:
    tree = _spec_tree()
    (exe,) = _calls(tree, "EXE")
    (collect,) = _calls(tree, "COLLECT")
    exe_kw = _kwargs(exe)
    for key in ("upx", "console"):
        assert isinstance(exe_kw.get(key), ast.Constant) and exe_kw[key].value is False, f"EXE needs {key}=False"
    assert isinstance(exe_kw.get("exclude_binaries"), ast.Constant) and exe_kw["exclude_binaries"].value is True
    assert isinstance(exe_kw.get("name"), ast.Constant) and exe_kw["name"].value == "tilewatch"
    # one-file would pass a.binaries / a.datas into EXE itself
    exe_args = {ast.unparse(arg) for arg in exe.args}
    assert not exe_args & {"a.binaries", "a.datas"}, "EXE must not embed the binaries (one-file)"
    collect_kw = _kwargs(collect)
    assert collect_kw["upx"].value is False
    # PyInstaller's strip breaks auditwheel-patched libraries (numpy's OpenBLAS);
    # only TensorFlow's libraries are stripped, on Linux, after COLLECT
    assert exe_kw["strip"].value is False and collect_kw["strip"].value is False
    assert ast.unparse(_assigned(tree, "STRIP_TENSORFLOW")) == "sys.platform.startswith('linux')"
    assert collect_kw["name"].value == "tilewatch"
    assert {ast.unparse(arg) for arg in collect.args} >= {"exe", "a.binaries", "a.datas"}
    assert "onefile" not in SPEC.read_text(encoding="utf-8").lower().replace("one-file", "")


def test_spec_excludes_other_qt_bindings_and_dev_tools() -> None:
    tree = _spec_tree()
    excludes = set(ast.literal_eval(_assigned(tree, "EXCLUDES")))
    assert {"PyQt5", "PyQt6", "PySide2", "tkinter", "IPython", "pytest", "matplotlib"} <= excludes
    # the bundle's own stack must not be excluded
    assert not excludes & {"PySide6", "shiboken6", "pyqtgraph", "tensorflow", "keras", "numpy", "core", "app"}
    (analysis,) = _calls(tree, "Analysis")
    assert ast.unparse(_kwargs(analysis)["excludes"]) == "EXCLUDES"


def test_spec_bundles_resources_and_every_core_module() -> None:
    tree = _spec_tree()
    datas = ast.unparse(_assigned(tree, "datas"))
    assert datas == "[(RESOURCES, 'resources')]"
    hidden = ast.unparse(_assigned(tree, "hiddenimports"))
    assert "collect_submodules('core')" in hidden and "collect_submodules('app')" in hidden
    # no hand-written tensorflow / pyqtgraph hooks: the contrib ones do it
    (analysis,) = _calls(tree, "Analysis")
    assert ast.unparse(_kwargs(analysis)["hookspath"]) == "[]"
    # AutoGraph needs core's source text in the bundle
    assert ast.literal_eval(_kwargs(analysis)["module_collection_mode"]) == {"core": "pyz+py"}
    entry = ast.unparse(analysis.args[0])
    assert "launcher.py" in entry
    launcher = (INSTALLER / "launcher.py").read_text(encoding="utf-8")
    assert launcher.index("freeze_support()") < launcher.index("from app")


def test_spec_platform_icons_exist() -> None:
    assert (ICONS / "tilewatch.ico").is_file()  # Windows
    assert (ICONS / "tilewatch-512.png").is_file()  # macOS (converted) and Linux
    assert len(_calls(_spec_tree(), "BUNDLE")) == 1  # the macOS .app


def test_frozen_resource_lookups_meet_the_spec_destination(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The spec puts resources/ at the bundle root; core and app must look there."""
    import core.config

    assert core.config.PRESETS_DIR == ROOT / "resources" / "presets"  # i.e. <root of core's parent>/resources/presets
    # frozen, core/__file__ is <_MEIPASS>/core/config.pyc: the same formula lands on <_MEIPASS>/resources/presets
    frozen_file = tmp_path / "core" / "config.pyc"
    assert frozen_file.parent.parent / "resources" / "presets" == tmp_path / "resources" / "presets"
    try:
        import app.resources as app_resources
    except ImportError:  # the app package may not exist yet in a partial checkout
        pytest.skip("app.resources is not importable")
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert app_resources.resource_root() == tmp_path / "resources"


# ---------------------------------------------------------------- .desktop


def _desktop_entry(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(path, encoding="utf-8")
    return dict(parser["Desktop Entry"])


def test_desktop_entry_has_the_required_keys() -> None:
    entry = _desktop_entry(DESKTOP)
    assert entry["Type"] == "Application"
    assert entry["Name"] == "Tilewatch"
    assert entry["GenericName"] and entry["Comment"]
    assert shlex.split(entry["Exec"])[0] == "tilewatch"
    assert entry["Icon"] == "tilewatch"
    assert entry["Terminal"] == "false"
    categories = entry["Categories"].split(";")
    assert entry["Categories"].endswith(";") and {"Science", "Education"} <= set(categories)
    assert entry["Keywords"].endswith(";")
    # Qt on X11 sets WM_CLASS's class to QApplication.applicationName(): "tilewatch" (app.APP_NAME)
    assert entry["StartupWMClass"] == "tilewatch"


def test_desktop_entry_passes_desktop_file_validate() -> None:
    tool = shutil.which("desktop-file-validate")
    if tool is None:
        pytest.skip("desktop-file-validate is not installed (Debian: desktop-file-utils); key checks still ran")
    result = subprocess.run([tool, str(DESKTOP)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error:" not in result.stdout + result.stderr


# ---------------------------------------------------------------- icons


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert head[12:16] == b"IHDR"
    return struct.unpack(">II", head[16:24])


@pytest.mark.parametrize("size", ICON_SIZES)
def test_icon_png_has_its_size(size: int) -> None:
    assert _png_size(ICONS / f"tilewatch-{size}.png") == (size, size)


def test_icon_svg_parses_and_is_square() -> None:
    root = ET.parse(ICONS / "tilewatch.svg").getroot()
    assert root.tag == "{http://www.w3.org/2000/svg}svg"
    _, _, width, height = (float(v) for v in root.attrib["viewBox"].split())
    assert width == height > 0


# ---------------------------------------------------------------- scripts


@needs_bash
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_syntax(script: str) -> None:
    result = subprocess.run(["bash", "-n", str(INSTALLER / script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def _fake_build(folder: Path) -> Path:
    """A stand-in for dist/tilewatch: a program that echoes its arguments, plus a library folder."""
    folder.mkdir(parents=True)
    program = folder / "tilewatch"
    program.write_text('#!/bin/sh\necho "fake tilewatch $*"\n', encoding="utf-8")
    program.chmod(0o755)
    (folder / "_internal").mkdir()
    (folder / "_internal" / "libfake.so").write_bytes(b"\0" * 64)
    return folder


def _run(cmd: list[str], home: Path, data: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HOME": str(home), "XDG_DATA_HOME": str(data)}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, f"{cmd} failed:\n{result.stdout}\n{result.stderr}"
    return result


def _tree(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


@needs_bash
def test_install_then_uninstall_leaves_nothing_behind(tmp_path: Path) -> None:
    build = _fake_build(tmp_path / "dist" / "tilewatch")
    home, data = tmp_path / "home", tmp_path / "my data"  # a space in the path on purpose
    home.mkdir()
    _run(["bash", str(INSTALLER / "install.sh"), "--from", str(build)], home, data)

    app_dir = data / "tilewatch" / "app"
    assert (app_dir / "tilewatch").is_file() and (app_dir / "_internal" / "libfake.so").is_file()
    assert (app_dir / "uninstall.sh").is_file() and (app_dir / "install-manifest.txt").is_file()
    for size in ICON_SIZES:
        installed = data / "icons" / "hicolor" / f"{size}x{size}" / "apps" / "tilewatch.png"
        assert _png_size(installed) == (size, size)
    assert (data / "icons" / "hicolor" / "scalable" / "apps" / "tilewatch.svg").is_file()

    entry = _desktop_entry(data / "applications" / "tilewatch.desktop")
    exec_argv = shlex.split(entry["Exec"])
    assert exec_argv == [str(app_dir / "tilewatch")]
    assert entry["TryExec"] == str(app_dir / "tilewatch")
    assert Path(entry["Icon"]).is_file()
    # the menu entry's command starts the installed program
    started = subprocess.run([exec_argv[0], "--selftest"], capture_output=True, text=True, timeout=30)
    assert started.stdout.strip() == "fake tilewatch --selftest"

    # the installed copy of uninstall.sh, as a user would run it
    _run(["bash", str(app_dir / "uninstall.sh")], home, data)
    assert not data.exists(), f"left behind: {sorted(_tree(data))}"


@needs_bash
def test_reinstall_from_a_tarball_layout_keeps_user_runs(tmp_path: Path) -> None:
    """install.sh beside tilewatch/ and resources/ (the extracted tar.gz); user data survives."""
    package = tmp_path / "tilewatch-0.0.0-linux-x86_64"
    _fake_build(package / "tilewatch")
    for script in ("install.sh", "uninstall.sh"):
        shutil.copy2(INSTALLER / script, package / script)
    (package / "resources" / "icons").mkdir(parents=True)
    shutil.copy2(DESKTOP, package / "resources")
    for icon in [ICONS / "tilewatch.svg", *(ICONS / f"tilewatch-{n}.png" for n in ICON_SIZES)]:
        shutil.copy2(icon, package / "resources" / "icons")

    home, data = tmp_path / "home", tmp_path / "data"
    home.mkdir()
    runs = data / "tilewatch" / "runs" / "a"
    runs.mkdir(parents=True)
    (runs / "run.json").write_text("{}", encoding="utf-8")
    (data / "applications").mkdir()
    (data / "applications" / "other.desktop").write_text("[Desktop Entry]\n", encoding="utf-8")
    before = _tree(data)

    _run(["bash", str(package / "install.sh")], home, data)
    _run(["bash", str(package / "install.sh")], home, data)  # a second install replaces the first
    assert (data / "tilewatch" / "app" / "tilewatch").is_file()
    _run(["bash", str(INSTALLER / "uninstall.sh"), "--quiet"], home, data)

    after = _tree(data) - {"applications/mimeinfo.cache"}  # a pre-existing applications/ may keep its cache
    assert after == before
