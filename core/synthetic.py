"""Synthetic tile datasets with learnable structure, for demos, tests and benchmarks.

:func:`make_dataset` writes ``OUT/images/tile_NNNN.tif`` and
``OUT/masks/tile_NNNN.tif`` in the layout :mod:`core.tiles` reads. Each scene
is a background with shapes (ellipses, rotated rectangles) and lines (roads,
rivers) drawn into the mask; every class has its own spectral signature (its
band values differ from the background's in every band), and the image gets
sensor noise and a smooth low-frequency haze on top. Tiles carry small GeoTIFF
tags so that georeferencing round trips can be tested. The output depends only
on the arguments (deterministic for a seed); ``OUT/.complete`` is written last,
so a half-written folder is recognisable.

Only numpy and tifffile are used. This module must never import Qt,
TensorFlow or Keras.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path
from typing import Literal

import numpy as np
import tifffile

__all__ = ["make_dataset", "COMPLETE_MARKER", "COMPRESSIONS", "DTYPES"]

#: Written last into the output folder: its presence means the dataset is whole.
COMPLETE_MARKER = ".complete"
#: Compression choices; "mixed" cycles none, deflate, lzw, zstd over the tiles.
COMPRESSIONS = ("none", "deflate", "lzw", "zstd", "mixed")
#: Image sample types the generator can write.
DTYPES = ("uint8", "uint16", "int16", "float32")

# Reflectance-like range of the class signatures, and the range the sensor clips to.
_LOW, _HIGH = 600.0, 3400.0
_SENSOR_MIN, _SENSOR_MAX = 200.0, 4000.0
_PIXEL_SIZE = 10.0  # metres, as a 10 m satellite band


def _check_options(*, tiles: int, size: int, channels: int, classes: int, empty_fraction: float,
                   planar: object, compression: str | None, dtype: str, mask_values: str,
                   multilabel: bool) -> None:
    if not isinstance(tiles, int) or tiles < 1:
        raise ValueError(f"tiles must be a whole number >= 1, not {tiles!r}")
    if not isinstance(size, int) or not 8 <= size <= 16384:
        raise ValueError(f"size must be a whole number of pixels in 8..16384, not {size!r}")
    if not isinstance(channels, int) or not 1 <= channels <= 32:
        raise ValueError(f"channels must be a whole number in 1..32, not {channels!r}")
    if not isinstance(classes, int) or not 1 <= classes <= 32:
        raise ValueError(f"classes must be a whole number in 1..32, not {classes!r}")
    if multilabel and classes < 2:
        raise ValueError("classes must be >= 2 with multilabel=True (one mask channel per label)")
    if not 0.0 <= float(empty_fraction) <= 1.0:
        raise ValueError(f"empty_fraction must be between 0 and 1, not {empty_fraction!r}")
    if planar not in (True, False, "mixed"):
        raise ValueError(f"planar must be True, False or 'mixed', not {planar!r}")
    if compression is not None and compression not in COMPRESSIONS:
        raise ValueError(f"compression must be one of {', '.join(COMPRESSIONS)} or None, "
                         f"not {compression!r}")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    if mask_values not in ("01", "0255"):
        raise ValueError(f"mask_values must be '01' or '0255', not {mask_values!r}")
    if mask_values == "0255" and classes > 1 and not multilabel:
        raise ValueError("mask_values='0255' is for binary or multi-label masks, "
                         "not label masks (classes > 1)")


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [0, 1): a coarse grid bilinearly upsampled to size x size."""
    coarse = rng.random((cells + 1, cells + 1))
    pos = np.linspace(0.0, cells, size)
    lower = np.minimum(pos.astype(np.int64), cells - 1)
    frac = pos - lower
    weights = np.zeros((size, cells + 1))
    weights[np.arange(size), lower] = 1.0 - frac
    weights[np.arange(size), lower + 1] = frac
    return (weights @ coarse @ weights.T).astype(np.float32)


def _box(cy: float, cx: float, reach: float, size: int) -> tuple[slice, slice]:
    y0, y1 = max(0, int(cy - reach)), min(size, int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(size, int(cx + reach) + 2)
    return slice(y0, y1), slice(x0, x1)


def _draw_blob(canvas: np.ndarray, rng: np.random.Generator, value: int) -> None:
    """Draw a rotated ellipse or rectangle (a field, a building, a lake)."""
    size = canvas.shape[0]
    a = rng.uniform(0.04, 0.16) * size + 2
    b = a * rng.uniform(0.4, 1.0)
    cy, cx = rng.uniform(0, size, 2)
    angle = rng.uniform(0, np.pi)
    rows, cols = _box(cy, cx, a, size)
    yy, xx = np.ogrid[rows, cols]
    dy, dx = yy - cy, xx - cx
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    if rng.random() < 0.5:
        inside = (u / a) ** 2 + (v / b) ** 2 <= 1.0
    else:
        inside = (np.abs(u) <= a) & (np.abs(v) <= b)
    canvas[rows, cols][inside] = value


def _draw_line(canvas: np.ndarray, rng: np.random.Generator, value: int) -> None:
    """Draw a thick bent line across the tile (a road or a river)."""
    size = canvas.shape[0]
    width = rng.uniform(1.0, 2.5) + size / 256.0
    start, end = rng.uniform(0, size, 2), rng.uniform(0, size, 2)
    bend = (start + end) / 2 + rng.normal(0, size / 8, 2)
    for p, q in ((start, bend), (bend, end)):
        lo = np.maximum(np.floor(np.minimum(p, q) - width), 0).astype(int)
        hi = np.minimum(np.ceil(np.maximum(p, q) + width) + 1, size).astype(int)
        if (hi <= lo).any():
            continue
        yy, xx = np.ogrid[lo[0]:hi[0], lo[1]:hi[1]]
        d = q - p
        length2 = float(d @ d) or 1.0
        t = np.clip(((yy - p[0]) * d[0] + (xx - p[1]) * d[1]) / length2, 0.0, 1.0)
        dist2 = (yy - p[0] - t * d[0]) ** 2 + (xx - p[1] - t * d[1]) ** 2
        canvas[lo[0]:hi[0], lo[1]:hi[1]][dist2 <= width * width] = value


def _draw_scene(rng: np.random.Generator, size: int, labels: int) -> np.ndarray:
    """A uint8 label map 0..labels with every label 1..labels present."""
    canvas = np.zeros((size, size), dtype=np.uint8)
    shapes = int(rng.integers(2, 6))  # shape sizes scale with the tile, so the count need not
    for i in range(shapes + labels):
        value = 1 + i % labels
        if rng.random() < 0.3:
            _draw_line(canvas, rng, value)
        else:
            _draw_blob(canvas, rng, value)
    present = np.bincount(canvas.ravel(), minlength=labels + 1)
    for value in range(1, labels + 1):
        if present[value] == 0:  # overdrawn: stamp a small square so every class appears
            side = max(2, size // 16)
            y, x = rng.integers(0, size - side + 1, 2)
            canvas[y:y + side, x:x + side] = value
    return canvas


def _signatures(rng: np.random.Generator, classes: int, channels: int) -> np.ndarray:
    """(classes, channels) band values; every class differs from the background in every band."""
    sig = np.empty((classes, channels), dtype=np.float32)
    sig[0] = rng.uniform(_LOW + 400, _HIGH - 400, channels)
    for k in range(1, classes):
        step = rng.uniform(350, 1100, channels) * rng.choice([-1.0, 1.0], channels)
        sig[k] = np.clip(sig[0] + step, _LOW, _HIGH)
        too_close = np.abs(sig[k] - sig[0]) < 300
        sig[k][too_close] = sig[0][too_close] + np.where(sig[0][too_close] < 2000.0, 600.0, -600.0)
    return sig


def _to_dtype(image: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "uint16":
        return np.clip(image, 0, 65535).astype(np.uint16)
    if dtype == "int16":
        return np.clip(image - 2000.0, -32768, 32767).astype(np.int16)
    if dtype == "uint8":
        return np.clip(image / 16.0, 0, 255).astype(np.uint8)
    return (image / 10000.0).astype(np.float32)


def _geotags(index: int, size: int) -> list[tuple[int, str, int, tuple[float | int, ...], bool]]:
    # Tiles laid side by side in UTM zone 33N (EPSG:32633), 10 m pixels.
    x0 = 500000.0 + (index % 16) * size * _PIXEL_SIZE
    y0 = 5000000.0 - (index // 16) * size * _PIXEL_SIZE
    keys = (1, 1, 0, 3,
            1024, 0, 1, 1,       # GTModelType: projected
            1025, 0, 1, 1,       # GTRasterType: PixelIsArea
            3072, 0, 1, 32633)   # ProjectedCSType: WGS 84 / UTM 33N
    return [
        (33550, "d", 3, (_PIXEL_SIZE, _PIXEL_SIZE, 0.0), True),
        (33922, "d", 6, (0.0, 0.0, 0.0, x0, y0, 0.0), True),
        (34735, "H", len(keys), keys, True),
    ]


def _write(path: Path, array: np.ndarray, *, planar: bool, compression: str,
           extratags: list[tuple[int, str, int, tuple[float | int, ...], bool]]) -> None:
    tifffile.imwrite(
        path, array, photometric="minisblack",
        planarconfig=None if array.ndim == 2 else ("separate" if planar else "contig"),
        compression=None if compression == "none" else compression,
        extratags=extratags,
    )


def make_dataset(out: str | PathLike[str], *, tiles: int = 12, size: int = 256, channels: int = 6,
                 classes: int = 1, seed: int = 0, empty_fraction: float = 0.0,
                 planar: bool | Literal["mixed"] = False, compression: str | None = None,
                 dtype: str = "uint16", mask_values: Literal["01", "0255"] = "01",
                 multilabel: bool = False) -> Path:
    """Write a synthetic dataset of ``tiles`` square tiles of ``size`` pixels into ``out``.

    ``classes=1`` gives binary masks ({0,1}, or {0,255} with
    ``mask_values="0255"``); ``classes=K>1`` gives label masks 0..K-1, or with
    ``multilabel=True`` K-channel {0,1} masks. ``round(tiles * empty_fraction)``
    tiles (chosen by the seed) have no foreground at all. ``planar=True``
    stores images (C, H, W); ``"mixed"`` alternates. ``compression`` is None
    or "none", "deflate", "lzw", "zstd", or "mixed" (cycles the four).

    Stale ``tile_*.tif`` files and the completion marker of an earlier run into
    the same folder are removed first.

    Returns:
        ``out`` as a Path.

    Raises:
        ValueError: for an invalid option (the message names it).
        OSError: if the folder cannot be written.
    """
    _check_options(tiles=tiles, size=size, channels=channels, classes=classes,
                   empty_fraction=empty_fraction, planar=planar, compression=compression,
                   dtype=dtype, mask_values=mask_values, multilabel=multilabel)
    out = Path(out)
    images, masks = out / "images", out / "masks"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    (out / COMPLETE_MARKER).unlink(missing_ok=True)
    for folder in (images, masks):
        for stale in folder.glob("tile_*.tif"):
            stale.unlink()

    rng = np.random.default_rng(seed)
    labels = classes if multilabel else max(1, classes - 1)
    signature = _signatures(rng, labels + 1, channels)
    empty = set(rng.permutation(tiles)[: int(round(tiles * float(empty_fraction)))].tolist())
    cycle = ("none", "deflate", "lzw", "zstd")
    for index in range(tiles):
        tile_rng = np.random.default_rng([seed, index])
        is_planar = bool(index % 2) if planar == "mixed" else bool(planar)
        codec = cycle[index % 4] if compression == "mixed" else (compression or "none")
        image, mask = _scene(tile_rng, size=size, labels=labels, signature=signature,
                             empty=index in empty, multilabel=multilabel)
        if classes == 1 and mask_values == "0255":
            mask = mask * np.uint8(255)
        elif multilabel and mask_values == "0255":
            mask = mask * np.uint8(255)
        image = _to_dtype(image, dtype)
        if is_planar:
            image = np.ascontiguousarray(np.moveaxis(image, -1, 0))
            if mask.ndim == 3:
                mask = np.ascontiguousarray(np.moveaxis(mask, -1, 0))
        tags = _geotags(index, size)
        name = f"tile_{index:04d}.tif"
        _write(images / name, image, planar=is_planar, compression=codec, extratags=tags)
        _write(masks / name, mask, planar=is_planar, compression=codec, extratags=tags)
    (out / COMPLETE_MARKER).write_text(f"tiles={tiles} size={size} seed={seed}\n")
    return out


def _scene(rng: np.random.Generator, *, size: int, labels: int, signature: np.ndarray,
           empty: bool, multilabel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Return (float32 image (H, W, C), uint8 mask (H, W) labels or (H, W, K) multi-label)."""
    channels = signature.shape[1]
    if multilabel:
        planes = np.zeros((size, size, labels), dtype=np.uint8)
        if not empty:
            for k in range(labels):
                planes[..., k] = _draw_scene(rng, size, 1)
        image = np.broadcast_to(signature[0], (size, size, channels)).copy()
        for k in range(labels):  # overlapping labels mix their spectral shifts
            image += planes[..., k : k + 1] * (signature[k + 1] - signature[0])
        mask = planes
    else:
        mask = np.zeros((size, size), dtype=np.uint8) if empty else _draw_scene(rng, size, labels)
        image = signature[mask]
    # Texture within classes, a smooth haze that brightens all bands, and sensor noise.
    texture = _smooth_field(rng, size, max(2, size // 24)) - 0.5
    haze = _smooth_field(rng, size, 3)
    image *= 1.0 + 0.12 * texture[..., None]
    image += (250.0 * haze)[..., None]
    image += rng.standard_normal((size, size, channels), dtype=np.float32) * 60.0
    np.clip(image, _SENSOR_MIN, _SENSOR_MAX, out=image)
    return image, mask
