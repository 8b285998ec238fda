#!/usr/bin/env bash
# Re-render resources/icons/tilewatch-<N>.png (and the Windows .ico) from the
# SVG source. The PNGs are committed; run this only after editing the SVG.
# Needs rsvg-convert (Debian: librsvg2-bin); the .ico also needs ImageMagick.
set -euo pipefail
cd "$(dirname "$0")/.."
icons=resources/icons
sizes=(16 32 48 64 128 256 512)
command -v rsvg-convert >/dev/null || { echo "rsvg-convert not found (Debian: apt-get install librsvg2-bin)" >&2; exit 2; }
for n in "${sizes[@]}"; do
    rsvg-convert -w "$n" -h "$n" "$icons/tilewatch.svg" -o "$icons/tilewatch-$n.png"
done
if command -v magick >/dev/null; then im=magick; elif command -v convert >/dev/null; then im=convert; else im=""; fi
if [ -n "$im" ]; then
    "$im" "$icons"/tilewatch-{16,32,48,64,128,256}.png "$icons/tilewatch.ico"
else
    echo "ImageMagick not found: $icons/tilewatch.ico not refreshed" >&2
fi
echo "rendered: ${sizes[*]} px"
