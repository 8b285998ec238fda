"""The training input: tile split, normalisation and streamed tf.data pipelines.

What it guarantees:

- The train/val split is by tile, seeded and made before any augmentation
  (:func:`split_tiles`), so no view of a validation tile is ever trained on.
- Normalisation statistics come from a bounded random sample of pixels of the
  tiles given (the train tiles), read one tile at a time
  (:func:`compute_normalization`); they are plain numbers that run.json records.
- The training stream (:func:`make_train_dataset`) is infinite and
  deterministic per epoch: the batches of epoch ``e`` depend only on
  ``(seed, e)`` and the arguments, so a run resumed at ``first_epoch=e`` sees
  exactly the batches it would have seen. Batches are built in parallel
  threads (each read opens its own file: a ``TiffFile`` is not thread-safe);
  several crops are cut from each read, and only the crop windows are read
  where the layout allows it (a memory map of uncompressed contiguous files;
  only the strips/tiles that intersect the windows of compressed ones).
  Nothing but the batches in flight and the prefetch buffer is held in memory,
  so memory use does not grow with the number of tiles.
- The validation set (:func:`make_val_dataset`) is a fixed grid of windows
  covering every validation tile; it is the same on every call.

TensorFlow is imported only by the functions that build datasets, so the
split and the normalisation can be used (e.g. to read a run) without it. This
module must never import Qt.
"""

from __future__ import annotations

import math
from pathlib import Path
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import tifffile

from core.tiles import (
    MaskKind,
    TileInfo,
    mask_targets,
    read_image,
    read_mask,
    read_mask_array,
)

if TYPE_CHECKING:  # pragma: no cover
    import tensorflow as tf

__all__ = [
    "Split",
    "split_tiles",
    "Normalization",
    "compute_normalization",
    "make_train_dataset",
    "make_val_dataset",
    "steps_per_pass",
    "load_tile",
    "crops_per_read",
    "AUGMENTS",
    "NORMALIZATIONS",
    "MAX_CROPS_PER_READ",
]

#: Augmentation choices: none, the 4 flips (incl. identity), the 8 dihedral transforms.
AUGMENTS = ("none", "flips", "dihedral")
#: Normalisation methods.
NORMALIZATIONS = ("percentile", "zscore", "none")
#: The most crops cut from one tile read (more crops per read = fewer reads per batch).
MAX_CROPS_PER_READ = 4
#: Smallest per-band scale; a band with less spread in the sample gets scale 1.
SCALE_EPS = 1e-6

# Distinct stream keys so that the split, the normalisation sample and the
# crops never share random numbers even for the same seed.
_SPLIT_KEY, _NORM_KEY, _PLAN_KEY, _CROP_KEY = 1, 2, 3, 4


def _rng(*keys: int) -> np.random.Generator:
    return np.random.default_rng([int(k) % (1 << 63) for k in keys])


# --------------------------------------------------------------------------- split


@dataclass(frozen=True)
class Split:
    """Tile names for training and validation (disjoint, each sorted)."""

    train: tuple[str, ...]
    val: tuple[str, ...]


def split_tiles(names: Sequence[str], *, val_fraction: float, seed: int) -> Split:
    """Split tiles (not patches) into train and validation, seeded.

    ``round(len(names) * val_fraction)`` tiles go to validation, but at least
    one when ``val_fraction > 0`` and there are two or more tiles, and never
    all of them (at least one tile is kept for training). The result depends
    only on the set of names, ``val_fraction`` and ``seed``.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: for no names, duplicate names or ``val_fraction`` outside [0, 1).
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), not {val_fraction!r}")
    ordered = sorted(names)
    if not ordered:
        raise ValueError("no tiles to split")
    if len(set(ordered)) != len(ordered):
        raise ValueError("tile names must be unique")
    n = len(ordered)
    n_val = round(n * val_fraction)
    if val_fraction > 0 and n >= 2:
        n_val = min(max(n_val, 1), n - 1)
    else:
        n_val = 0
    order = _rng(seed, _SPLIT_KEY).permutation(n)
    val = {ordered[i] for i in order[:n_val]}
    return Split(train=tuple(x for x in ordered if x not in val),
                 val=tuple(x for x in ordered if x in val))


# --------------------------------------------------------------------------- normalisation


@dataclass(frozen=True)
class Normalization:
    """Per-band affine normalisation: ``x_norm = (x - offset) / scale``."""

    method: str
    offset: tuple[float, ...]
    scale: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.method not in NORMALIZATIONS:
            raise ValueError(f"normalization method must be one of {', '.join(NORMALIZATIONS)}, "
                             f"not {self.method!r}")
        if len(self.offset) != len(self.scale) or not self.offset:
            raise ValueError("offset and scale must be non-empty and of equal length (one per band)")
        if any(not s > 0 for s in self.scale):
            raise ValueError("every scale must be positive")

    @property
    def channels(self) -> int:
        """The number of bands this normalisation is for."""
        return len(self.offset)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (what run.json records)."""
        return {"method": self.method, "offset": list(self.offset), "scale": list(self.scale)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Normalization:
        """Rebuild from :meth:`to_dict`'s output.

        Raises:
            ValueError: if keys are missing or values are invalid.
        """
        try:
            return cls(method=str(d["method"]), offset=tuple(float(v) for v in d["offset"]),
                       scale=tuple(float(v) for v in d["scale"]))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a normalization record (need method, offset, scale): {d!r}") from exc

    def apply(self, image: np.ndarray) -> np.ndarray:
        """Normalise an (H, W, C) image (or a stack ending in C).

        Returns:
            float32 array of the same shape.

        Raises:
            ValueError: if the last axis is not this normalisation's band count.
        """
        if image.shape[-1] != self.channels:
            raise ValueError(f"image has {image.shape[-1]} bands, normalization is for "
                             f"{self.channels}")
        offset = np.asarray(self.offset, dtype=np.float32)
        inv_scale = np.float32(1.0) / np.asarray(self.scale, dtype=np.float32)
        return (image.astype(np.float32) - offset) * inv_scale


def compute_normalization(tiles: Sequence[TileInfo], *, method: str, seed: int,
                          sample_pixels: int = 200_000) -> Normalization:
    """Compute per-band normalisation statistics from a random pixel sample of ``tiles``.

    Pass the train tiles only. About ``sample_pixels / len(tiles)`` pixels are
    drawn (seeded) from each tile, reading one tile at a time, so memory is
    bounded by one tile plus the sample. ``percentile``: offset = 2nd
    percentile, scale = 98th - 2nd; ``zscore``: mean and standard deviation;
    ``none``: offset 0, scale 1. A band with (almost) no spread in the sample
    gets scale 1, so it maps near 0 instead of exploding.

    Returns:
        The :class:`Normalization`.

    Raises:
        ValueError: for an unknown method, no tiles, or tiles with differing bands.
        DatasetError: if a tile cannot be read.
    """
    if method not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {', '.join(NORMALIZATIONS)}, not {method!r}")
    if not tiles:
        raise ValueError("no tiles to compute normalisation statistics from")
    channels = {t.channels for t in tiles}
    if len(channels) != 1:
        raise ValueError(f"tiles have differing band counts {sorted(channels)}")
    c = channels.pop()
    if method == "none":
        return Normalization("none", (0.0,) * c, (1.0,) * c)
    per_tile = max(1, math.ceil(sample_pixels / len(tiles)))
    rng = _rng(seed, _NORM_KEY)
    samples = []
    for tile in tiles:
        pixels = read_image(tile).reshape(-1, c)
        take = min(per_tile, pixels.shape[0])
        index = rng.choice(pixels.shape[0], size=take, replace=False)
        samples.append(pixels[index].astype(np.float64))
    sample = np.concatenate(samples)
    if method == "percentile":
        low, high = np.percentile(sample, [2.0, 98.0], axis=0)
        offset, scale = low, high - low
    else:
        offset, scale = sample.mean(axis=0), sample.std(axis=0)
    scale = np.where(scale > SCALE_EPS, scale, 1.0)
    return Normalization(method, tuple(float(v) for v in offset), tuple(float(v) for v in scale))


# --------------------------------------------------------------------------- numpy side


def steps_per_pass(n_train_tiles: int, *, batch_size: int) -> int:
    """Batches in "one pass over the training tiles" (``steps_per_epoch = 0``).

    One pass is one crop per training tile: ``ceil(n_train_tiles / batch_size)``
    batches, at least 1. (A tile larger than the patch holds more than one
    patch's worth of pixels; the pass still counts tiles, so an epoch takes the
    same time whatever the patch size, and every tile is visited once.)

    Raises:
        ValueError: if ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    return max(1, math.ceil(max(0, n_train_tiles) / batch_size))


def crops_per_read(n_tiles: int, crops_per_epoch: int, *,
                   max_crops: int = MAX_CROPS_PER_READ) -> float:
    """Mean crops cut from one tile read in an epoch of ``crops_per_epoch`` patches.

    Every tile is read at least once per epoch while the epoch needs that many
    crops; beyond that, each read gives up to ``max_crops`` crops.
    """
    return crops_per_epoch / _reads_per_epoch(n_tiles, crops_per_epoch, max_crops)


def _reads_per_epoch(n_tiles: int, crops: int, max_crops: int) -> int:
    return min(crops, max(n_tiles, math.ceil(crops / max_crops)))


def _epoch_plan(n_tiles: int, crops: int, max_crops: int, seed: int, epoch: int) -> np.ndarray:
    """The crops of one epoch as rows (epoch, tile index, read index, crop index in read), int64.

    Tiles are read in an order shuffled by (seed, epoch), reshuffled for each
    further pass; the reads' crop counts add up to exactly ``crops``, and a
    read's crops are consecutive rows.
    """
    reads = _reads_per_epoch(n_tiles, crops, max_crops)
    rng = _rng(seed, _PLAN_KEY, epoch)
    passes = math.ceil(reads / n_tiles)
    order = np.concatenate([rng.permutation(n_tiles) for _ in range(passes)])[:reads]
    counts = np.full(reads, crops // reads, dtype=np.int64)
    counts[: crops % reads] += 1
    read_of_crop = np.repeat(np.arange(reads), counts)
    first_crop = np.repeat(np.cumsum(counts) - counts, counts)
    plan = np.empty((crops, 4), dtype=np.int64)
    plan[:, 0] = epoch
    plan[:, 1] = order[read_of_crop]
    plan[:, 2] = read_of_crop
    plan[:, 3] = np.arange(crops) - first_crop
    return plan


def _transform(array: np.ndarray, code: int) -> np.ndarray:
    """Apply dihedral transform ``code`` in 0..7 (rotate code % 4 quarter turns, then flip)."""
    out = np.rot90(array, k=code % 4, axes=(0, 1))
    if code >= 4:
        out = out[:, ::-1]
    return out


class _CropReader:
    """Reads one tile and cuts its crops; called from tf.data's threads (one file per read).

    Crops are cut from the stored arrays and transformed while still in the
    stored dtype, then normalised straight into the output buffer.
    """

    def __init__(self, tiles: Sequence[TileInfo], *, kind: MaskKind, num_outputs: int,
                 normalization: Normalization, patch_size: int, augment: str, seed: int) -> None:
        self.tiles = tuple(tiles)
        self.kind = kind
        self.num_outputs = num_outputs
        self.offset = np.asarray(normalization.offset, dtype=np.float32)
        self.inv_scale = np.float32(1.0) / np.asarray(normalization.scale, dtype=np.float32)
        self.channels = normalization.channels
        self.patch = patch_size
        self.augment = augment
        self.seed = seed

    def _buffers(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        p = self.patch
        return (np.zeros((count, p, p, self.channels), dtype=np.float32),
                np.zeros((count, p, p, self.num_outputs), dtype=np.float32))

    def _normalize_rows(self, raw: np.ndarray, out: np.ndarray) -> None:
        """out = (raw - offset) * inv_scale for (h, w, C) arrays with contiguous rows.

        Working on whole rows (w * C values) instead of broadcasting over the
        short band axis keeps numpy's inner loop long: several times faster.
        """
        h, w, c = raw.shape
        rows_out = out.reshape(h, w * c)
        np.subtract(raw.reshape(h, w * c), np.tile(self.offset, w), out=rows_out, casting="unsafe")
        rows_out *= np.tile(self.inv_scale, w)
        if not np.shares_memory(rows_out, out):  # reshape had to copy: write the result back
            out[...] = rows_out.reshape(h, w, c)

    def _put(self, image: np.ndarray, mask: np.ndarray, code: int, x_out: np.ndarray,
             y_out: np.ndarray) -> None:
        """Write one raw crop into the patch buffers: x = T(pad(normalise(crop))), y = T(pad(mask)).

        ``T`` is dihedral transform ``code``; a crop smaller than the patch (a
        small tile) is zero-padded at the bottom and right, image and mask alike.
        """
        h, w = image.shape[:2]
        p = self.patch
        if (h, w) == (p, p):
            self._normalize_rows(np.ascontiguousarray(_transform(image, code)), x_out)
        else:
            padded = np.zeros_like(x_out)
            self._normalize_rows(np.ascontiguousarray(image), padded[:h, :w])
            x_out[...] = _transform(padded, code)
            grown = np.zeros((p, p, mask.shape[2]), dtype=mask.dtype)
            grown[:h, :w] = mask
            mask = grown
        y_out[...] = mask_targets(_transform(mask, code), kind=self.kind,
                                  num_outputs=self.num_outputs)

    def grid_crops(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All grid windows of one tile, in row-major order."""
        tile = self.tiles[int(index)]
        image, mask = read_image(tile), read_mask_array(tile)
        windows = _grid(image.shape[0], image.shape[1], self.patch)
        p = self.patch
        xs, ys = self._buffers(len(windows))
        for i, (y, x) in enumerate(windows):
            self._put(image[y:y + p, x:x + p], mask[y:y + p, x:x + p], 0, xs[i], ys[i])
        return xs, ys


# --------------------------------------------------------------------------- window reads


@dataclass(frozen=True)
class _Layout:
    """How one TIFF stores its pixels, from its header (a few numbers, cached per file version).

    ``kind``: "memmap" (one contiguous uncompressed block: windows are read
    through a memory map, so only their bytes are touched), "segments" (one
    strip- or tile-organised page: only the strips/tiles that intersect the
    windows are read and decoded), or "whole" (anything else: the whole file is
    read as :mod:`core.tiles` reads it).
    """

    kind: str
    shaped: tuple[int, int, int, int, int] = (1, 1, 1, 1, 1)  # (planes, depth, H, W, samples)
    dtype: str = ""
    offset: int = 0


def _file_layout(path: Path) -> _Layout:
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            page = series.pages[0] if len(series.pages) == 1 else None
            if page is None or not hasattr(page, "shaped"):
                return _Layout("whole")
            s = tuple(int(d) for d in page.shaped)
            if len(s) != 5 or s[1] != 1 or (s[0] > 1 and s[4] > 1) or math.prod(s) != math.prod(
                    int(d) for d in series.shape):
                return _Layout("whole")
            dtype = np.dtype(page.dtype).newbyteorder(tif.byteorder).str
            # tifffile gives a bool here, older versions (offset, size): take the first offset.
            if page.is_contiguous and int(page.compression) == 1 and sum(
                    int(c) for c in page.databytecounts) >= math.prod(s) * np.dtype(dtype).itemsize:
                return _Layout("memmap", s, dtype, int(page.dataoffsets[0]))
            return _Layout("segments", s, dtype)
    except Exception:  # noqa: BLE001 - the whole-file read reports the problem properly
        return _Layout("whole")


def _channels_last(shaped_array: np.ndarray) -> np.ndarray:
    """(planes, 1, H, W, samples) -> a (H, W, C) view."""
    if shaped_array.shape[0] > 1:
        return np.moveaxis(shaped_array[:, 0, :, :, 0], 0, -1)
    return shaped_array[0, 0]


def _decode_rows_cols(path: Path, layout: _Layout, boxes: Sequence[tuple[int, int, int, int]]
                      ) -> np.ndarray:
    """Decode only the strips/tiles of a one-page TIFF that intersect ``boxes`` (y0, y1, x0, x1).

    Returns the (H, W, C) image with those boxes filled in (the rest is zero).
    """
    out = np.zeros(layout.shaped, dtype=layout.dtype)
    with tifffile.TiffFile(path) as tif:
        page = tif.series[0].pages[0]
        decode, fh = page.decode, tif.filehandle
        for index, (offset, count) in enumerate(zip(page.dataoffsets, page.databytecounts)):
            _, (plane, depth, y, x, _s), shape = decode(None, index)
            h, w = shape[1], shape[2]
            if not any(y < y1 and y + h > y0 and x < x1 and x + w > x0
                       for y0, y1, x0, x1 in boxes):
                continue
            if not count:
                continue
            fh.seek(offset)
            segment, (plane, depth, y, x, _s), shape = decode(fh.read(count), index)
            if segment is None:
                continue
            h = min(shape[1], out.shape[2] - y)
            w = min(shape[2], out.shape[3] - x)
            out[plane, depth:depth + shape[0], y:y + h, x:x + w, :shape[3]] = \
                segment[:, :h, :w, : out.shape[4]]
    return _channels_last(out)


def _copy_transformed(out: np.ndarray, window: np.ndarray, code: int) -> None:
    """``out[...] = T(window)`` for dihedral code ``code``, in one strided copy.

    When the dtypes match and each pixel's bands are contiguous, the pixels
    are copied as opaque items (one void item per pixel): numpy's inner loop
    then runs along the patch instead of over the few bands, several times
    faster for the transposing transforms.
    """
    if (window.dtype == out.dtype and window.ndim == 3 and out.flags.c_contiguous
            and window.strides[2] == window.itemsize):
        item = np.dtype((np.void, window.itemsize * window.shape[2]))
        window, out = window.view(item), out.view(item)
    np.copyto(out, _transform(window, code), casting="unsafe")


class _WindowReader:
    """Reads the crop windows of one tile read, raw, transformed; called from tf.data's threads.

    Only the TIFF read happens here (plus one strided copy that cuts and
    transforms each window): normalisation, padding correction, mask targets
    and batching are TensorFlow ops (no GIL). Each read opens its own file
    (a ``TiffFile`` is not thread-safe); the per-file layout (a few numbers,
    keyed by path, size and mtime) is cached so headers are parsed once.
    """

    def __init__(self, tiles: Sequence[TileInfo], *, kind: MaskKind, num_outputs: int,
                 normalization: Normalization, patch_size: int) -> None:
        self.tiles = tuple(tiles)
        self.kind = kind
        self.num_outputs = num_outputs
        self.channels = normalization.channels
        self.patch = patch_size
        dtypes = {t.dtype for t in self.tiles}
        self.image_dtype = np.dtype(dtypes.pop()) if len(dtypes) == 1 else np.dtype(np.float32)
        self.mask_dtype = np.dtype(np.int32 if kind == "multiclass" and num_outputs > 255
                                   else np.uint8)
        self.mask_channels = num_outputs if kind == "multilabel" else 1
        offset = np.asarray(normalization.offset, dtype=np.float32)
        inv_scale = np.float32(1.0) / np.asarray(normalization.scale, dtype=np.float32)
        self.offset_row = np.tile(offset, patch_size)
        self.inv_scale_row = np.tile(inv_scale, patch_size)
        self._layouts: dict[tuple[str, int, int], _Layout] = {}

    def _layout(self, path: Path) -> _Layout:
        try:
            stat = path.stat()
        except OSError:
            return _Layout("whole")
        key = (str(path), stat.st_size, stat.st_mtime_ns)
        layout = self._layouts.get(key)
        if layout is None:
            layout = self._layouts[key] = _file_layout(path)
        return layout

    def _windows(self, path: Path, boxes: list[tuple[int, int, int, int]], height: int,
                 width: int, whole: Any) -> tuple[np.ndarray, Any]:
        """A (H, W, C) array (or view) of the file valid at least inside ``boxes``.

        Returns (array, keep-alive); ``whole`` reads the whole file (core.tiles).
        """
        layout = self._layout(path)
        if layout.kind != "whole" and layout.shaped[2:4] == (height, width):
            try:
                if layout.kind == "memmap":
                    mapped = np.memmap(path, dtype=layout.dtype, mode="r", offset=layout.offset,
                                       shape=layout.shaped)
                    return _channels_last(mapped), mapped
                return _decode_rows_cols(path, layout, boxes), None
            except Exception:  # noqa: BLE001 - fall back; the whole read reports problems
                pass
        return whole(), None

    def _read_into(self, tile: TileInfo, boxes: list[tuple[int, int, int, int]],
                   codes: list[int], xs_out: np.ndarray, ms_out: np.ndarray,
                   valid: np.ndarray) -> bool:
        """Cut, pad and transform ``boxes`` of one tile read into the output slots.

        Returns True when the crops are padded (the tile is smaller than the patch).
        """
        p = self.patch
        h, w = tile.height, tile.width
        ch, cw = min(h, p), min(w, p)
        padded = (ch, cw) != (p, p)
        image, keep = self._windows(tile.image_path, boxes, h, w, lambda: read_image(tile))
        try:
            if image.shape != (h, w, self.channels):
                image = read_image(tile)  # raises DatasetError if the file changed
            for i, ((y0, y1, x0, x1), code) in enumerate(zip(boxes, codes)):
                if padded:
                    grown = np.zeros((p, p, self.channels), dtype=image.dtype)
                    grown[:ch, :cw] = image[y0:y1, x0:x1]
                    _copy_transformed(xs_out[i], grown, code)
                    inside = np.zeros((p, p, 1), dtype=np.uint8)
                    inside[:ch, :cw] = 1
                    valid[i] = _transform(inside, code)
                else:
                    _copy_transformed(xs_out[i], image[y0:y1, x0:x1], code)
        finally:
            del image, keep  # unmap before the next read
        mask, keep = self._windows(tile.mask_path, boxes, h, w, lambda: read_mask_array(tile))
        try:
            if mask.shape[:2] != (h, w):
                mask = read_mask_array(tile)  # raises DatasetError naming the file
            mask = mask.reshape(h, w, -1)
            for i, ((y0, y1, x0, x1), code) in enumerate(zip(boxes, codes)):
                window = _mask_values(mask[y0:y1, x0:x1], self.kind, self.num_outputs)
                if padded:
                    grown = np.zeros((p, p, window.shape[2]), dtype=window.dtype)
                    grown[:ch, :cw] = window
                    window = grown
                _copy_transformed(ms_out[i], window, code)
        finally:
            del mask, keep
        return padded

    def batch_crops(self, rows: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The crops of one batch from its plan rows (tile, read, y, x, code).

        Consecutive rows of the same read are served by one file read (a read
        whose crops straddle two batches is read once by each, which for
        memory-mapped files costs nothing extra: only the windows are touched).

        Returns:
            (image (B, P, P, C) in the tiles' dtype, mask (B, P, P, K) uint8 of
            0/1 (binary, multilabel) or labels (multiclass), valid (B, P, P, 1)
            uint8: 1 where the pixel is inside the tile, padded (B,) bool).
        """
        p, count = self.patch, len(rows)
        any_small = any(min(self.tiles[int(t)].height, self.tiles[int(t)].width) < p
                        for t in rows[:, 0])
        # Every element is written, so only batches with padded crops need zeroed buffers.
        alloc = np.zeros if any_small else np.empty
        xs_out = _aligned(alloc, (count, p, p, self.channels), self.image_dtype)
        ms_out = _aligned(alloc, (count, p, p, self.mask_channels), self.mask_dtype)
        valid = _aligned(np.ones if any_small else np.empty, (count, p, p, 1) if any_small
                         else (count, 1, 1, 1), np.uint8)
        padded = np.zeros(count, dtype=bool)
        start = 0
        while start < count:
            tile_index, read = int(rows[start, 0]), int(rows[start, 1])
            stop = start + 1
            while stop < count and int(rows[stop, 1]) == read:
                stop += 1
            tile = self.tiles[tile_index]
            ch, cw = min(tile.height, p), min(tile.width, p)
            boxes = [(int(y), int(y) + ch, int(x), int(x) + cw) for y, x in rows[start:stop, 2:4]]
            codes = [int(c) for c in rows[start:stop, 4]]
            slots = slice(start, stop)
            padded[slots] = self._read_into(tile, boxes, codes, xs_out[slots], ms_out[slots],
                                            valid[slots] if any_small else valid[:0])
            start = stop
        # Normalise the whole batch with two passes over long rows, straight into
        # a 64-byte aligned float32 buffer (numpy ufuncs release the GIL; measured
        # here ~3x faster than the same cast/subtract/multiply as TF ops).
        x = _aligned(np.empty, xs_out.shape, np.float32)
        rows_in = xs_out.reshape(count * p, p * self.channels)
        rows_out = x.reshape(count * p, p * self.channels)
        np.subtract(rows_in, self.offset_row, out=rows_out, casting="unsafe")
        rows_out *= self.inv_scale_row
        for i in np.flatnonzero(padded):
            x[i] *= valid[i]  # padding is zero after normalisation
        y = _aligned(np.empty, (count, p, p, self.num_outputs), np.float32)
        if self.kind == "multiclass":
            y[...] = np.eye(self.num_outputs, dtype=np.float32)[ms_out[..., 0]]
        else:
            np.copyto(y, ms_out, casting="unsafe")
        return x, y


def _aligned(alloc: Any, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """``alloc(shape, dtype)`` starting on a 64-byte boundary (TF can then take it without a copy)."""
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    raw = alloc(size + 64, dtype=np.uint8)
    start = -raw.ctypes.data % 64
    return raw[start:start + size].view(dtype).reshape(shape)


def _mask_values(window: np.ndarray, kind: str, num_outputs: int) -> np.ndarray:
    """A stored mask window (h, w, K) as what the TF side expects: 0/1 or checked labels."""
    if kind == "binary":
        return window[..., :1] != 0
    if kind == "multiclass":
        labels = window[..., :1]
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_outputs:
            raise ValueError(f"mask has labels outside 0..{num_outputs - 1}")
        return labels
    if window.shape[-1] != num_outputs:
        raise ValueError(f"mask has {window.shape[-1]} label channels, expected {num_outputs}")
    return window != 0


#: Augment choice -> the dihedral codes it draws from (flips: identity, horizontal flip,
#: vertical flip = rot180 + flip, both = rot180).
_AUGMENT_CODES = {"none": (0,), "flips": (0, 4, 6, 2), "dihedral": tuple(range(8))}


def _epoch_crops(heights: np.ndarray, widths: np.ndarray, crops: int, max_crops: int,
                 patch: int, augment: str, seed: int, epoch: int) -> np.ndarray:
    """The crops of one epoch as int64 rows (tile, read, y, x, dihedral code).

    Read order and crops per read come from :func:`_epoch_plan`; crop positions
    and codes are drawn from one generator seeded by (seed, epoch), so the
    epoch depends only on ``(seed, epoch)``.
    """
    plan = _epoch_plan(len(heights), crops, max_crops, seed, epoch)
    draws = _rng(seed, _CROP_KEY, epoch).random((crops, 3))
    h, w = heights[plan[:, 1]], widths[plan[:, 1]]
    free_y, free_x = np.maximum(0, h - patch), np.maximum(0, w - patch)
    choices = np.asarray(_AUGMENT_CODES[augment], dtype=np.int64)
    rows = np.empty((crops, 5), dtype=np.int64)
    rows[:, 0], rows[:, 1] = plan[:, 1], plan[:, 2]
    rows[:, 2] = np.minimum((draws[:, 0] * (free_y + 1)).astype(np.int64), free_y)
    rows[:, 3] = np.minimum((draws[:, 1] * (free_x + 1)).astype(np.int64), free_x)
    rows[:, 4] = choices[np.minimum((draws[:, 2] * len(choices)).astype(np.int64),
                                    len(choices) - 1)]
    return rows


def _starts(length: int, patch: int) -> list[int]:
    """Window starts covering [0, length): evenly spaced, last window flush with the end."""
    if length <= patch:
        return [0]
    count = math.ceil(length / patch)
    return [int(round(v)) for v in np.linspace(0, length - patch, count)]


def _grid(height: int, width: int, patch: int) -> list[tuple[int, int]]:
    return [(y, x) for y in _starts(height, patch) for x in _starts(width, patch)]


def _check_common(tiles: Sequence[TileInfo], normalization: Normalization, patch_size: int,
                  batch_size: int, num_outputs: int) -> None:
    if not tiles:
        raise ValueError("no tiles given")
    if patch_size < 1:
        raise ValueError(f"patch_size must be >= 1, not {patch_size}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1, not {num_outputs}")
    bands = {t.channels for t in tiles}
    if bands != {normalization.channels}:
        raise ValueError(f"tiles have {sorted(bands)} bands but the normalization is for "
                         f"{normalization.channels}")


# --------------------------------------------------------------------------- tf.data


def make_train_dataset(tiles: Sequence[TileInfo], *, kind: MaskKind, num_outputs: int,
                       normalization: Normalization, patch_size: int, batch_size: int,
                       augment: str, seed: int, steps_per_epoch: int, first_epoch: int = 0,
                       max_crops_per_read: int = MAX_CROPS_PER_READ) -> tf.data.Dataset:
    """The infinite training stream of (x, y) batches, deterministic per epoch.

    Epoch ``e`` (0-based) is ``steps_per_epoch`` batches (0 means
    :func:`steps_per_pass`); its tile order, crop positions and augmentations
    depend only on ``(seed, e)``, so the stream started at ``first_epoch=e``
    yields exactly the batches the stream from 0 yields from epoch ``e`` on.
    Each epoch reads every tile at least once (while it needs that many
    crops), cutting up to ``max_crops_per_read`` random ``patch_size`` crops
    per read; tiles smaller than the patch are zero-padded (mask padded with
    background 0). Augmentation ("none", "flips", "dihedral") transforms image
    and mask alike. Reads run in parallel (AUTOTUNE, order kept), followed by
    a prefetch.

    Returns:
        A ``tf.data.Dataset`` of ``x`` float32 (B, P, P, C) normalised and
        ``y`` float32 (B, P, P, num_outputs) of 0/1.

    Raises:
        ValueError: for an invalid option or tiles/normalisation band mismatch.
    """
    import tensorflow as tf

    _check_common(tiles, normalization, patch_size, batch_size, num_outputs)
    if augment not in AUGMENTS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTS)}, not {augment!r}")
    if steps_per_epoch < 0:
        raise ValueError(f"steps_per_epoch must be >= 0, not {steps_per_epoch}")
    if first_epoch < 0:
        raise ValueError(f"first_epoch must be >= 0, not {first_epoch}")
    if max_crops_per_read < 1:
        raise ValueError(f"max_crops_per_read must be >= 1, not {max_crops_per_read}")
    steps = steps_per_epoch or steps_per_pass(len(tiles), batch_size=batch_size)
    crops = steps * batch_size
    channels = normalization.channels
    reader = _WindowReader(tiles, kind=kind, num_outputs=num_outputs,
                           normalization=normalization, patch_size=patch_size)
    heights = np.asarray([t.height for t in tiles], dtype=np.int64)
    widths = np.asarray([t.width for t in tiles], dtype=np.int64)
    p = patch_size

    def plan(epoch: np.ndarray) -> np.ndarray:
        return _epoch_crops(heights, widths, crops, max_crops_per_read, p, augment, seed,
                            int(epoch))

    def epoch_batches(epoch: tf.Tensor) -> tf.data.Dataset:
        rows = tf.numpy_function(plan, [epoch], tf.int64, stateful=False)
        return tf.data.Dataset.from_tensor_slices(tf.reshape(rows, [steps, batch_size, 5]))

    def load(rows: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # One Python call per batch: read only the crop windows (memory map or the
        # strips/tiles that intersect them), one strided copy per window that cuts
        # and transforms it in the stored dtype, then numpy normalisation over the
        # whole batch (ufuncs and copies release the GIL, so batches overlap).
        x, y = tf.numpy_function(reader.batch_crops, [rows], [tf.float32, tf.float32],
                                 stateful=False)
        x.set_shape([batch_size, p, p, channels])
        y.set_shape([batch_size, p, p, num_outputs])
        return x, y

    # Each element is one whole batch: no unbatch/batch copies.
    dataset = (
        tf.data.Dataset.range(first_epoch, np.iinfo(np.int64).max)
        .flat_map(epoch_batches)
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .prefetch(tf.data.AUTOTUNE)
    )
    options = tf.data.Options()
    options.deterministic = True
    return dataset.with_options(options)


def make_val_dataset(tiles: Sequence[TileInfo], *, kind: MaskKind, num_outputs: int,
                     normalization: Normalization, patch_size: int, batch_size: int,
                     seed: int) -> tf.data.Dataset:
    """The fixed validation set: a grid of ``patch_size`` windows covering every tile.

    Along each side, ``ceil(length / patch_size)`` windows are spaced evenly
    with the last flush with the edge (so they cover the tile, overlapping
    slightly where the size is not a multiple of the patch); a side shorter
    than the patch gets one zero-padded window. No augmentation. The set is
    the same on every call; ``seed`` is accepted for symmetry with
    :func:`make_train_dataset` and does not change it.

    Returns:
        A finite ``tf.data.Dataset`` of (x, y) batches as in
        :func:`make_train_dataset` (the last batch may be smaller), with a
        known cardinality.

    Raises:
        ValueError: for an invalid option or tiles/normalisation band mismatch.
    """
    import tensorflow as tf

    del seed  # the grid is fixed: nothing random to seed
    _check_common(tiles, normalization, patch_size, batch_size, num_outputs)
    reader = _CropReader(tiles, kind=kind, num_outputs=num_outputs, normalization=normalization,
                         patch_size=patch_size, augment="none", seed=0)
    windows = sum(len(_grid(t.height, t.width, patch_size)) for t in tiles)
    channels = normalization.channels

    def load(index: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x, y = tf.numpy_function(reader.grid_crops, [index], [tf.float32, tf.float32],
                                 stateful=False)
        x.set_shape([None, patch_size, patch_size, channels])
        y.set_shape([None, patch_size, patch_size, num_outputs])
        return x, y

    dataset = (
        tf.data.Dataset.range(len(tiles))
        .map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
        .unbatch()
        .batch(batch_size)
        .apply(tf.data.experimental.assert_cardinality(math.ceil(windows / batch_size)))
        .prefetch(tf.data.AUTOTUNE)
    )
    return dataset


def load_tile(tile: TileInfo, *, normalization: Normalization, kind: MaskKind,
              num_outputs: int) -> tuple[np.ndarray, np.ndarray]:
    """Read one whole tile for probing or prediction.

    Returns:
        (image, mask): the normalised float32 (H, W, C) image and the float32
        (H, W, num_outputs) mask, both at the tile's full size.

    Raises:
        DatasetError: if the tile cannot be read.
        ValueError: if the tile's bands differ from the normalisation's.
    """
    image = normalization.apply(read_image(tile))
    return image, read_mask(tile, kind=kind, num_outputs=num_outputs)
