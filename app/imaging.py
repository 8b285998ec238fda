"""Pure-numpy image helpers for the previews: composites, stretch, overlays.

No Qt here, so the pixel logic is tested on small arrays with exact values.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "stretch",
    "composite",
    "mask_overlay",
    "difference_rgb",
    "probability_rgb",
    "probability_map",
    "read_tile_array",
    "foreground",
    "FP_COLOR",
    "FN_COLOR",
]

#: False positives (predicted, not in the mask) and false negatives (missed): orange / blue.
FP_COLOR = (255, 140, 0)
FN_COLOR = (30, 110, 255)
TP_COLOR = (235, 235, 235)


def stretch(band: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Map a band to [0, 1] between its ``low`` and ``high`` percentiles (NaN-safe)."""
    band = np.asarray(band, dtype=np.float32)
    finite = band[np.isfinite(band)]
    if finite.size == 0:
        return np.zeros(band.shape, np.float32)
    lo, hi = np.percentile(finite, [low, high])
    if hi <= lo:
        hi = lo + 1.0
    out = (band - lo) / (hi - lo)
    return np.clip(np.nan_to_num(out), 0.0, 1.0).astype(np.float32)


def composite(
    image: np.ndarray, bands: tuple[int, int, int] = (0, 1, 2), low: float = 2.0, high: float = 98.0
) -> np.ndarray:
    """An (H, W, 3) uint8 RGB composite of three bands of an (H, W, C) image.

    Band indices past the channel count are clamped (a 1-band tile shows grey).
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[..., None]
    c = image.shape[-1]
    planes = [stretch(image[..., min(max(b, 0), c - 1)], low, high) for b in bands]
    return (np.stack(planes, axis=-1) * 255.0 + 0.5).astype(np.uint8)


def foreground(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: pixels that belong to any foreground class of an (H, W[, K]) mask."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        if mask.shape[-1] == 1:
            return mask[..., 0] > 0.5
        return np.argmax(mask, axis=-1) > 0 if _is_one_hot(mask) else (mask > 0.5).any(axis=-1)
    return mask > 0.5


def _is_one_hot(mask: np.ndarray) -> bool:
    sums = mask.sum(axis=-1)
    return bool(np.allclose(sums, 1.0))


def probability_map(prob: np.ndarray) -> np.ndarray:
    """(H, W) foreground probability from (H, W) sigmoid or (H, W, K) outputs."""
    prob = np.asarray(prob, dtype=np.float32)
    if prob.ndim == 3:
        if prob.shape[-1] == 1:
            return prob[..., 0]
        if np.allclose(prob.sum(axis=-1), 1.0, atol=1e-3):  # softmax: anything but background
            return 1.0 - prob[..., 0]
        return prob.max(axis=-1)  # independent sigmoids: the most confident label
    return prob


def mask_overlay(rgb: np.ndarray, mask: np.ndarray, opacity: float, color=(255, 40, 40)) -> np.ndarray:
    """Blend a red mask over an RGB composite at ``opacity`` in [0, 1]."""
    fg = foreground(mask)
    out = rgb.astype(np.float32).copy()
    a = float(np.clip(opacity, 0.0, 1.0))
    out[fg] = (1 - a) * out[fg] + a * np.asarray(color, np.float32)
    return (out + 0.5).astype(np.uint8)


def difference_rgb(pred_fg: np.ndarray, mask_fg: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: true positives light grey, false positives orange, false negatives blue."""
    out = np.zeros(pred_fg.shape + (3,), np.uint8)
    out[pred_fg & mask_fg] = TP_COLOR
    out[pred_fg & ~mask_fg] = FP_COLOR
    out[~pred_fg & mask_fg] = FN_COLOR
    return out


def probability_rgb(prob: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 of a probability map through the 'viridis' colormap."""
    idx = np.clip(np.nan_to_num(prob) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return _viridis()[idx]


@lru_cache(maxsize=1)
def _viridis() -> np.ndarray:
    import pyqtgraph as pg  # lazy: keeps this module importable without Qt for tests of the maths

    return np.asarray(pg.colormap.get("viridis").getLookupTable(0.0, 1.0, 256, alpha=False), np.uint8)


def read_tile_array(path: str | Path) -> np.ndarray:
    """Read an image or mask tile as (H, W[, C]); a leading small axis is taken as channels.

    Used for probe tiles listed in probe.json. Prefers core.tiles' reader (it
    knows the channel-axis rules) and falls back to tifffile.
    """
    import tifffile

    arr = np.asarray(tifffile.imread(str(path)))
    if arr.ndim == 3 and arr.shape[0] <= 32 and arr.shape[0] < min(arr.shape[1:]):
        arr = np.moveaxis(arr, 0, -1)
    return arr
