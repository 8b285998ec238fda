#!/usr/bin/env bash
# Remove what installer/install.sh installed, exactly: the program folder, the
# menu entry, the icons, every folder the install created (if still empty) and
# any cache file it created. The user's own data (runs, settings, logs) stays.
#
#   ~/.local/share/tilewatch/app/uninstall.sh    (a copy is installed there)
#   installer/uninstall.sh [--quiet]             ($XDG_DATA_HOME respected)
set -euo pipefail

quiet=0
for arg in "$@"; do
    case "$arg" in
        --quiet) quiet=1 ;;
        -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown option $arg (valid: --quiet)" >&2; exit 2 ;;
    esac
done
say() { [ "$quiet" = 1 ] || echo "$@"; }

here=$(cd "$(dirname "$0")" && pwd)
if [ -f "$here/install-manifest.txt" ]; then
    dest=$here
else
    data=${XDG_DATA_HOME:-}
    case "$data" in /*) ;; *) data=$HOME/.local/share ;; esac
    dest=$data/tilewatch/app
fi
manifest=$dest/install-manifest.txt
if [ ! -f "$manifest" ]; then
    say "Tilewatch is not installed in $dest (no install-manifest.txt): nothing to do"
    exit 0
fi

kinds=(); paths=()
while IFS=$'\t' read -r kind path; do
    [ -n "$kind" ] || continue
    kinds+=("$kind"); paths+=("$path")
done < "$manifest"

data=""
for i in "${!kinds[@]}"; do [ "${kinds[$i]}" = data ] && data=${paths[$i]}; done
case "$data" in /?*) ;; *) echo "uninstall.sh: $manifest names no data folder; not touching anything" >&2; exit 1 ;; esac
# Never act on a path outside the data folder the install used.
inside() { case "$1" in "$data"/*) return 0 ;; *) return 1 ;; esac; }

cd /  # the folder this script runs from is about to go
for i in "${!kinds[@]}"; do
    path=${paths[$i]}
    case "${kinds[$i]}" in
        file) inside "$path" && rm -f -- "$path" ;;
        tree)
            case "$path" in
                "$data"/tilewatch/app) rm -rf -- "$path" ;;
                *) echo "uninstall.sh: skipping unexpected folder $path" >&2 ;;
            esac ;;
    esac
done

if command -v update-desktop-database >/dev/null && [ -d "$data/applications" ]; then
    update-desktop-database -q "$data/applications" || true
fi
if command -v gtk-update-icon-cache >/dev/null && [ -f "$data/icons/hicolor/index.theme" ]; then
    gtk-update-icon-cache -q -f "$data/icons/hicolor" || true
fi

# A cache file the install created goes when it is the last thing in its folder.
for i in "${!kinds[@]}"; do
    path=${paths[$i]}
    if [ "${kinds[$i]}" = cache ] && inside "$path" && [ -f "$path" ]; then
        others=$(find "$(dirname "$path")" -mindepth 1 -maxdepth 1 ! -name "$(basename "$path")" | head -n 1)
        [ -n "$others" ] || rm -f -- "$path"
    fi
done

# Folders the install created, deepest (last made) first, when empty.
for (( i=${#kinds[@]}-1; i>=0; i-- )); do
    if [ "${kinds[$i]}" = dir ]; then
        path=${paths[$i]}
        if [ "$path" = "$data" ] || inside "$path"; then rmdir -- "$path" 2>/dev/null || true; fi
    fi
done

say "Uninstalled Tilewatch from $dest (your runs and settings were kept)"
