#!/usr/bin/env bash
# Install Tilewatch for the current user (no root needed).
#
#   ./install.sh                 from the extracted tilewatch-<version>-linux-<arch>.tar.gz
#   installer/install.sh         from a source checkout, after installer/build.sh
#   install.sh --from DIR        any one-folder build (DIR/tilewatch is the program)
#
# What goes where ($XDG_DATA_HOME, default ~/.local/share):
#   tilewatch/app/                            the one-folder build, plus uninstall.sh and
#                                             install-manifest.txt (what this script made)
#   applications/tilewatch.desktop            the menu entry (Exec/TryExec/Icon: absolute paths)
#   icons/hicolor/<N>x<N>/apps/tilewatch.png  N = 16 32 48 64 128 256 512
#   icons/hicolor/scalable/apps/tilewatch.svg
# The program goes into tilewatch/app/, not tilewatch/ itself, because
# tilewatch/ is also the app's own data folder (platformdirs user_data_dir):
# uninstalling must never touch the user's runs.
# A second install replaces the first (it runs the recorded uninstall first).
set -euo pipefail

SIZES=(16 32 48 64 128 256 512)
here=$(cd "$(dirname "$0")" && pwd)

die() { echo "install.sh: $*" >&2; exit 2; }

src=""
while [ $# -gt 0 ]; do
    case "$1" in
        --from) [ $# -ge 2 ] || die "--from needs a folder"; src=$2; shift 2 ;;
        --from=*) src=${1#--from=}; shift ;;
        -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
        *) die "unknown option $1 (valid: --from DIR)" ;;
    esac
done

# The one-folder build: --from, else beside this script (tarball), else dist/ (checkout).
if [ -z "$src" ]; then
    if [ -x "$here/tilewatch/tilewatch" ]; then src=$here/tilewatch
    elif [ -x "$here/../dist/tilewatch/tilewatch" ]; then src=$here/../dist/tilewatch
    else die "no built Tilewatch found beside $here (run installer/build.sh, or pass --from DIR)"
    fi
fi
src=$(cd "$src" && pwd)
[ -f "$src/tilewatch" ] && [ -x "$src/tilewatch" ] || die "$src/tilewatch is not an executable program"

# The .desktop entry and icons: resources/ beside this script (tarball) or one level up (checkout).
if [ -f "$here/resources/tilewatch.desktop" ]; then res=$here/resources
elif [ -f "$here/../resources/tilewatch.desktop" ]; then res=$(cd "$here/../resources" && pwd)
else die "resources/tilewatch.desktop not found beside $here"
fi
for n in "${SIZES[@]}"; do
    [ -f "$res/icons/tilewatch-$n.png" ] || die "missing icon $res/icons/tilewatch-$n.png"
done
[ -f "$res/icons/tilewatch.svg" ] || die "missing icon $res/icons/tilewatch.svg"
[ -f "$here/uninstall.sh" ] || die "uninstall.sh is missing beside $here/install.sh"

data=${XDG_DATA_HOME:-}
case "$data" in /*) ;; *) data=$HOME/.local/share ;; esac  # XDG: a relative value is ignored
dest=$data/tilewatch/app
exe=$dest/tilewatch
case "$exe" in
    *[\"\`\$\\%]*|*$'\n'*|*$'\t'*) die "cannot write a menu entry for a path with quotes, \$, %, \\ or control characters: $exe" ;;
esac

# Replace an earlier install, but only one this script made.
if [ -e "$dest" ]; then
    if [ -f "$dest/install-manifest.txt" ] && [ -f "$dest/uninstall.sh" ]; then
        echo "Replacing the Tilewatch installed in $dest"
        bash "$dest/uninstall.sh" --quiet
    else
        die "$dest exists but was not made by this installer; move it away first"
    fi
fi

manifest=()   # lines "kind<TAB>path", in the order things were made
record() { manifest+=("$1"$'\t'"$2"); }
# mkdir -p that records each folder it creates, so uninstall can remove exactly those
make_dir() {
    local d=$1 missing=()
    while [ ! -d "$d" ]; do missing=("$d" "${missing[@]}"); d=$(dirname "$d"); done
    for d in "${missing[@]}"; do mkdir "$d"; record dir "$d"; done
}

record data "$data"
make_dir "$data/tilewatch"
partial="$data/tilewatch/.app.partial.$$"
trap 'rm -rf "$partial"' EXIT
cp -a "$src" "$partial"
cp "$here/uninstall.sh" "$partial/uninstall.sh"
chmod 755 "$partial/uninstall.sh"
mv "$partial" "$dest"
record tree "$dest"

for n in "${SIZES[@]}"; do
    make_dir "$data/icons/hicolor/${n}x${n}/apps"
    install -m 644 "$res/icons/tilewatch-$n.png" "$data/icons/hicolor/${n}x${n}/apps/tilewatch.png"
    record file "$data/icons/hicolor/${n}x${n}/apps/tilewatch.png"
done
make_dir "$data/icons/hicolor/scalable/apps"
install -m 644 "$res/icons/tilewatch.svg" "$data/icons/hicolor/scalable/apps/tilewatch.svg"
record file "$data/icons/hicolor/scalable/apps/tilewatch.svg"

make_dir "$data/applications"
desktop=$data/applications/tilewatch.desktop
icon=$data/icons/hicolor/256x256/apps/tilewatch.png
# sed replacement strings: escape \ & and the | delimiter
esc() { printf '%s' "$1" | sed -e 's/[\\&|]/\\&/g'; }
sed -e "s|^Exec=.*|Exec=\"$(esc "$exe")\"|" \
    -e "s|^TryExec=.*|TryExec=$(esc "$exe")|" \
    -e "s|^Icon=.*|Icon=$(esc "$icon")|" \
    "$res/tilewatch.desktop" > "$desktop.tmp"
chmod 644 "$desktop.tmp"
mv "$desktop.tmp" "$desktop"
record file "$desktop"
if command -v desktop-file-validate >/dev/null && ! desktop-file-validate "$desktop" >/dev/null; then
    echo "install.sh: warning: desktop-file-validate reports problems in $desktop:" >&2
    desktop-file-validate "$desktop" >&2 || true
fi

# Refresh the menu and icon caches where the tools exist. A cache file that
# this run creates is recorded so that uninstall can remove it again.
if command -v update-desktop-database >/dev/null; then
    [ -e "$data/applications/mimeinfo.cache" ] || record cache "$data/applications/mimeinfo.cache"
    update-desktop-database -q "$data/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null && [ -f "$data/icons/hicolor/index.theme" ]; then
    gtk-update-icon-cache -q -f "$data/icons/hicolor" || true
fi

printf '%s\n' "${manifest[@]}" > "$dest/install-manifest.txt"
trap - EXIT
echo "Installed Tilewatch in $dest"
echo "  menu entry: $desktop"
echo "  start it:   \"$exe\"   (or from the desktop menu: Science / Education)"
echo "  uninstall:  \"$dest/uninstall.sh\""
