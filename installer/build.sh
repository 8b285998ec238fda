#!/usr/bin/env bash
# Build the one-folder Tilewatch app (dist/tilewatch/), prove it runs, pack it.
#
#   bash installer/build.sh [--no-selftest] [--no-archive]
#
# 1. PyInstaller with installer/tilewatch.spec -> dist/tilewatch/tilewatch (timed)
# 2. the folder's size in MB
# 3. QT_QPA_PLATFORM=offscreen dist/tilewatch/tilewatch --selftest (must exit 0)
# 4. dist/tilewatch-<version>-<os>-<arch>[-cuda12].tar.gz with the folder, the
#    install/uninstall scripts, the .desktop entry and the icons (Linux only;
#    Windows and macOS wrap the folder as docs/INSTALL.md describes).
# The figures also go to dist/tilewatch-build.txt.
#
# PYTHON picks the interpreter (default: .venv/bin/python, else python3); it
# needs the project installed with the `installer` extra (make installer does it).
# A venv with the `gpu` extra (tensorflow[and-cuda]) gives the "-cuda12" build.
set -euo pipefail

cd "$(dirname "$0")/.."
script_start=$(date +%s)

selftest=1
archive=1
for arg in "$@"; do
    case "$arg" in
        --no-selftest) selftest=0 ;;
        --no-archive) archive=0 ;;
        -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $arg (valid: --no-selftest --no-archive)" >&2; exit 2 ;;
    esac
done

if [ -z "${PYTHON:-}" ]; then
    if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
"$PYTHON" -c "import PyInstaller" 2>/dev/null || {
    echo "build.sh: PyInstaller is not installed for $PYTHON; run: $PYTHON -m pip install -e '.[installer]'" >&2
    exit 2
}
[ -f app/__main__.py ] || { echo "build.sh: app/__main__.py is missing: nothing to build" >&2; exit 2; }

VERSION=$(sed -n 's/^__version__ *= *["'\'']\([^"'\'']*\)["'\''].*/\1/p' core/__init__.py)
case "$(uname -s)" in
    Linux) os=linux ;;
    Darwin) os=macos ;;
    MINGW*|MSYS*|CYGWIN*) os=windows ;;
    *) os=$(uname -s | tr '[:upper:]' '[:lower:]') ;;
esac
arch=$(uname -m)
flavor=""
# The tensorflow hook collects the nvidia-* CUDA wheels when they are installed.
if "$PYTHON" -c "import importlib.metadata as m; m.version('nvidia-cudnn-cu12')" 2>/dev/null; then
    flavor="-cuda12"
fi
NAME="tilewatch-${VERSION}-${os}-${arch}${flavor}"
APPDIR=dist/tilewatch
SUMMARY=dist/tilewatch-build.txt

# Qt's X11 plugin needs xcb libraries that many desktops lack (libxcb-cursor0
# above all, since Qt 6.5). PyInstaller bundles the ones it can resolve here,
# so a build machine without them makes a folder that may not open a window.
if [ "$os" = linux ]; then
    qxcb=$("$PYTHON" -c "import os, PySide6; print(os.path.join(os.path.dirname(PySide6.__file__), 'Qt', 'plugins', 'platforms', 'libqxcb.so'))")
    if [ -f "$qxcb" ] && missing=$(ldd "$qxcb" 2>/dev/null | awk '/not found/ {print $1}' | sort -u | tr '\n' ' ') && [ -n "$missing" ]; then
        echo "build.sh: WARNING: Qt's xcb plugin cannot resolve: $missing" >&2
        echo "  they will not be bundled, and users without them get no window on X11. Debian/Ubuntu:" >&2
        echo "  apt-get install libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0" >&2
    fi
fi

# A build reads the working tree for minutes; a file saved meanwhile leaves the
# folder with byte-code of one version and source of another (AutoGraph then
# warns "closure mismatch"). Detect it rather than ship it silently.
sources_digest() {
    find core app resources installer -type f \( -name '*.py' -o -name '*.toml' -o -name '*.spec' -o -name '*.qss' \) -print0 \
        | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-16
}
digest_before=$(sources_digest)

echo "== PyInstaller: $NAME (python: $PYTHON)"
start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath dist --workpath build/pyinstaller installer/tilewatch.spec
build_s=$(( $(date +%s) - start ))

if [ "$os" = windows ]; then BIN="$APPDIR/tilewatch.exe"; else BIN="$APPDIR/tilewatch"; fi
[ -x "$BIN" ] || { echo "build.sh: $BIN was not produced" >&2; exit 1; }
size_bytes=$(du -sb "$APPDIR" | cut -f1)  # apparent size: what unpacking it needs
size_mb=$(( size_bytes / 1000000 ))
size_mib=$(( size_bytes / 1048576 ))
files=$(find "$APPDIR" -type f | wc -l)
{
    echo "name: $NAME"
    echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(uname -sm), $(nproc 2>/dev/null || echo '?') cores"
    echo "build_seconds: $build_s"
    echo "folder_mb: $size_mb (10^6 bytes; $size_mib MiB)"
    echo "folder_files: $files"
} > "$SUMMARY"
if [ "$(sources_digest)" != "$digest_before" ]; then
    echo "build.sh: WARNING: sources under core/ app/ resources/ installer/ changed during the build;" >&2
    echo "  the folder may mix two versions of a module. Rebuild from a tree nobody is editing." >&2
    echo "sources_changed_during_build: yes" >> "$SUMMARY"
fi
echo "== built $BIN in ${build_s} s; folder: ${size_mb} MB (${size_mib} MiB), ${files} files"

if [ "$selftest" = 1 ]; then
    # A private home for the self-test, so that the build never writes into the
    # builder's own workspace, settings or logs.
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/tilewatch-selftest.XXXXXX")
    trap 'rm -rf "$scratch"' EXIT
    echo "== self-test: QT_QPA_PLATFORM=offscreen $BIN --selftest"
    t0=$(date +%s.%N)
    set +e
    env QT_QPA_PLATFORM=offscreen \
        XDG_DATA_HOME="$scratch/data" XDG_STATE_HOME="$scratch/state" \
        XDG_CACHE_HOME="$scratch/cache" XDG_CONFIG_HOME="$scratch/config" \
        timeout "${SELFTEST_TIMEOUT:-900}" "$BIN" --selftest
    rc=$?
    set -e
    selftest_s=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
    if [ "$rc" != 0 ]; then
        echo "build.sh: SELF-TEST FAILED (exit $rc after ${selftest_s} s)" >&2
        find "$scratch" -name '*.log' -type f | while read -r log; do
            echo "---- $log (last 60 lines)" >&2
            tail -n 60 "$log" >&2
        done
        echo "selftest: FAILED (exit $rc)" >> "$SUMMARY"
        exit 1
    fi
    echo "selftest_seconds: $selftest_s" >> "$SUMMARY"
    echo "== self-test passed in ${selftest_s} s"
fi

if [ "$archive" = 1 ] && [ "$os" = linux ]; then
    stage=build/package/$NAME
    rm -rf build/package
    mkdir -p "$stage/resources"
    # hard links where possible: the folder is ~1 GB and is only read from here
    cp -al "$APPDIR" "$stage/tilewatch" 2>/dev/null || cp -a "$APPDIR" "$stage/tilewatch"
    cp installer/install.sh installer/uninstall.sh "$stage/"
    cp resources/tilewatch.desktop "$stage/resources/"
    mkdir -p "$stage/resources/icons"
    cp resources/icons/tilewatch.svg resources/icons/tilewatch-*.png "$stage/resources/icons/"
    cp docs/INSTALL.md "$stage/INSTALL.md" 2>/dev/null || true
    tarball="dist/$NAME.tar.gz"
    echo "== packing $tarball"
    pack_start=$(date +%s)
    if command -v pigz >/dev/null; then
        tar -C build/package -cf - "$NAME" | pigz > "$tarball"
    else
        tar -C build/package -czf "$tarball" "$NAME"
    fi
    rm -rf build/package
    tar_mb=$(( $(du -sb "$tarball" | cut -f1) / 1000000 ))
    echo "archive: $tarball" >> "$SUMMARY"
    echo "archive_mb: $tar_mb" >> "$SUMMARY"
    echo "archive_seconds: $(( $(date +%s) - pack_start ))" >> "$SUMMARY"
    echo "== $tarball: ${tar_mb} MB"
fi

echo "total_seconds: $(( $(date +%s) - script_start ))" >> "$SUMMARY"
echo "== summary ($SUMMARY)"
cat "$SUMMARY"
