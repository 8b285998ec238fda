"""Discover, validate, read and write the TIFF tiles of a Tilewatch dataset.

A dataset is a folder ``DATA`` holding ``DATA/images/<name>.tif`` and
``DATA/masks/<name>.tif`` (``.tiff`` also accepted) paired by stem.
:func:`scan_dataset` checks a whole folder, collects *every* problem it finds
and raises one :class:`DatasetError` naming each offending file, what is wrong
with it and how to fix it; otherwise it returns a :class:`DatasetInfo` that
describes the data (and tells the trainer the model's output count and
activation). :func:`read_image` and :func:`read_mask` read one tile in the
layout the rest of Tilewatch uses (channels last), and :func:`write_geotiff`
writes a prediction with the georeferencing of its source tile.

Thread safety: a ``tifffile.TiffFile`` is not thread-safe, so every function
here opens its own file handle per read; the functions may be called from
several threads at once.

This module must never import Qt, TensorFlow or Keras: the data layer is used
by the command line, the GUI and plain scripts alike.
"""

from __future__ import annotations

import os
import struct
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any, Literal

import numpy as np
import tifffile

__all__ = [
    "DatasetError",
    "Problem",
    "MaskKind",
    "TileInfo",
    "DatasetInfo",
    "scan_dataset",
    "read_image",
    "read_mask",
    "read_mask_array",
    "mask_targets",
    "write_geotiff",
    "SUPPORTED_DTYPES",
    "GEOTIFF_TAGS",
    "MAX_CHANNELS",
    "MAX_CLASSES",
]

MaskKind = Literal["binary", "multiclass", "multilabel"]

#: Image sample types Tilewatch trains on.
SUPPORTED_DTYPES: tuple[str, ...] = ("uint8", "uint16", "int16", "float32")
#: The largest axis still taken for a channel (band) axis.
MAX_CHANNELS = 32
#: The most classes a label mask may encode (labels 0..MAX_CLASSES-1).
MAX_CLASSES = 64
#: GeoTIFF (and GDAL) tags kept from each tile and copied into predictions.
GEOTIFF_TAGS: dict[int, str] = {
    33550: "ModelPixelScale",
    33922: "ModelTiepoint",
    34264: "ModelTransformation",
    34735: "GeoKeyDirectory",
    34736: "GeoDoubleParams",
    34737: "GeoAsciiParams",
    42112: "GDAL_METADATA",
    42113: "GDAL_NODATA",
}
# TIFF field types used to write the tags back: 12 DOUBLE, 3 SHORT, 2 ASCII.
_GEOTAG_TYPES: dict[int, int] = {
    33550: 12, 33922: 12, 34264: 12, 34735: 3, 34736: 12, 34737: 2, 42112: 2, 42113: 2,
}
_SUFFIXES = (".tif", ".tiff")
_LISTED_WARNINGS = 5  # per-tile warnings listed one by one; the rest are counted


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file (or folder) of a dataset."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class DatasetError(ValueError):
    """The dataset cannot be used; ``problems`` lists every reason.

    ``str(exc)`` lists every problem, one per line, each naming the file, what
    is wrong with it and how to fix it.
    """

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        count = len(self.problems)
        head = f"the dataset has {count} problem{'s' if count != 1 else ''}:"
        super().__init__("\n".join([head, *(f"  {p}" for p in self.problems)]))


@dataclass(frozen=True)
class TileInfo:
    """What the headers of one image/mask pair say (no pixels are held).

    ``planar`` is True when the image is stored bands-first (C, H, W);
    ``mask_planar`` likewise for a multi-label mask stored (K, H, W).
    ``geotags`` holds the GeoTIFF tags present, keyed by tag code, with the
    values tifffile gives.
    """

    name: str
    image_path: Path
    mask_path: Path
    height: int
    width: int
    channels: int
    dtype: str
    planar: bool
    compression: str
    geotags: Mapping[int, Any] = field(default_factory=dict)
    mask_planar: bool = False


@dataclass(frozen=True)
class DatasetInfo:
    """A validated dataset: its tiles and what they add up to.

    ``num_outputs`` and ``activation`` are what the model's head must be:
    binary masks give 1 sigmoid output, K-class label masks K softmax outputs,
    K-channel multi-label masks K sigmoid outputs. ``foreground_fraction`` has
    one entry per output (for multiclass, per class including background 0).
    ``band_ranges`` is empty when the scan ran with ``pixel_stats=False``.
    """

    root: Path
    tiles: tuple[TileInfo, ...]
    channels: int
    dtype: str
    mask_kind: MaskKind
    num_outputs: int
    activation: Literal["sigmoid", "softmax"]
    mask_values: tuple[int, ...]
    foreground_fraction: tuple[float, ...]
    empty_masks: int
    band_ranges: tuple[tuple[float, float], ...]
    warnings: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        """The tile names (stems), sorted."""
        return tuple(t.name for t in self.tiles)

    def format(self) -> str:
        """Return the human summary printed by ``python -m core check``."""
        n = len(self.tiles)
        sizes = Counter((t.height, t.width) for t in self.tiles)
        if len(sizes) == 1:
            (h, w), = sizes
            size_text = f"{h} x {w} (all tiles)"
        else:
            areas = sorted(sizes, key=lambda s: (s[0] * s[1], s))
            size_text = (f"{len(sizes)} sizes, smallest {areas[0][0]} x {areas[0][1]}, "
                         f"largest {areas[-1][0]} x {areas[-1][1]}")
        layouts = Counter("planar (C,H,W)" if t.planar else "interleaved (H,W,C)" for t in self.tiles)
        compressions = Counter(t.compression for t in self.tiles)
        dtypes = Counter(t.dtype for t in self.tiles)
        georef = sum(1 for t in self.tiles if t.geotags)
        lines = [
            f"dataset:      {self.root}",
            f"tiles:        {n}",
            f"size:         {size_text}",
            f"channels:     {self.channels}",
            f"dtype:        {_counted(dtypes)}",
            f"layout:       {_counted(layouts)}",
            f"compression:  {_counted(compressions)}",
            f"georeferenced: {georef} of {n} tiles",
            f"masks:        {self.mask_kind}, values {{{', '.join(map(str, self.mask_values))}}}, "
            f"{self.num_outputs} {self.activation} output{'s' if self.num_outputs != 1 else ''}",
        ]
        if self.mask_kind == "multiclass":
            lines.append("class balance (share of pixels):")
            lines += [f"  class {k}{' (background)' if k == 0 else ''}: {_pct(f)}"
                      for k, f in enumerate(self.foreground_fraction)]
        elif self.mask_kind == "multilabel":
            lines.append("class balance (foreground share of pixels per label):")
            lines += [f"  label {k}: {_pct(f)}" for k, f in enumerate(self.foreground_fraction)]
        else:
            lines.append(f"class balance: foreground {_pct(self.foreground_fraction[0])} of pixels")
        lines.append(f"empty masks:  {self.empty_masks} of {n} (no foreground at all)")
        if self.band_ranges:
            lines.append("band ranges (min .. max):")
            lines += [f"  band {b + 1}: {_num(lo)} .. {_num(hi)}"
                      for b, (lo, hi) in enumerate(self.band_ranges)]
        if self.warnings:
            lines.append(f"warnings ({len(self.warnings)}):")
            lines += [f"  {w}" for w in self.warnings]
        else:
            lines.append("warnings:     none")
        return "\n".join(lines)


def _counted(counter: Counter[str]) -> str:
    if len(counter) == 1:
        return next(iter(counter))
    return ", ".join(f"{key} ({count})" for key, count in sorted(counter.items()))


def _pct(fraction: float) -> str:
    return f"{100.0 * fraction:.2f} %"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.6g}"


# --------------------------------------------------------------------------- layout


def _compression_name(page: tifffile.TiffPage) -> str:
    name = page.compression.name.lower()
    return {"adobe_deflate": "deflate", "zlib": "deflate"}.get(name, name)


def _channel_axis(shape: tuple[int, ...], planar_separate: bool) -> int | None:
    """Return the band axis of a squeezed 2-D/3-D shape (None for 2-D), or raise ValueError."""
    if len(shape) == 2:
        return None
    if len(shape) != 3:
        raise ValueError(
            f"has shape {shape}; expected (H, W), (H, W, C) or (C, H, W): "
            "save one tile per file with the bands as the first or last axis")
    if planar_separate and shape[0] <= MAX_CHANNELS:
        return 0
    if shape[2] <= MAX_CHANNELS:
        return 2
    if shape[0] <= MAX_CHANNELS:
        return 0
    raise ValueError(
        f"has shape {shape} and no axis of at most {MAX_CHANNELS} bands; "
        "save the tile as (H, W, C) or (C, H, W)")


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Drop length-1 axes beyond the two spatial ones (e.g. a leading page axis)."""
    dims = list(shape)
    while len(dims) > 2 and 1 in dims:
        dims.remove(1)
    return tuple(dims)


@dataclass(frozen=True)
class _Header:
    shape: tuple[int, ...]  # squeezed
    axis: int | None        # band axis in `shape`, None for 2-D
    dtype: str
    compression: str
    geotags: dict[int, Any]

    @property
    def hw(self) -> tuple[int, int]:
        dims = [d for i, d in enumerate(self.shape) if i != self.axis]
        return dims[0], dims[1]

    @property
    def bands(self) -> int:
        return 1 if self.axis is None else self.shape[self.axis]


def _read_header(path: Path) -> _Header:
    """Read one TIFF's header; raise ValueError with a user-facing reason."""
    try:
        size = path.stat().st_size
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                raise ValueError("holds no image data: re-export the tile as a TIFF image")
            series = tif.series[0]
            page = series.pages[0] if series.pages else tif.pages[0]
            end = 0
            for frame in series.pages:
                if frame is None:
                    continue
                for offset, count in zip(frame.dataoffsets, frame.databytecounts):
                    end = max(end, int(offset) + int(count))
            if end > size:
                raise ValueError(
                    f"is truncated: its pixel data should end at byte {end} but the file has "
                    f"{size} bytes; copy or export the tile again")
            shape = _squeezed(tuple(int(d) for d in series.shape))
            axis = _channel_axis(shape, _is_planar(series))
            tags = {code: page.tags[code].value for code in GEOTIFF_TAGS if code in page.tags}
            return _Header(shape, axis, str(series.dtype), _compression_name(page), tags)
    except ValueError as exc:
        if isinstance(exc, tifffile.TiffFileError):
            raise ValueError(f"is not a readable TIFF ({exc}); re-export it as a TIFF file") from exc
        raise
    except (OSError, IndexError, KeyError, struct.error) as exc:
        raise ValueError(f"cannot be read ({type(exc).__name__}: {exc}); "
                         "check that it is a complete TIFF file and readable") from exc


def _read_pixels(path: Path, header: _Header) -> np.ndarray:
    """Read the pixels as (H, W) or (H, W, C), channels last."""
    with tifffile.TiffFile(path) as tif:
        data = tif.series[0].asarray()
    data = data.reshape(header.shape)
    if header.axis == 0:
        data = np.moveaxis(data, 0, -1)
    return data


# --------------------------------------------------------------------------- scan


@dataclass
class _MaskStats:
    """What one mask contributes to the kind decision and the class balance."""

    ndim: int                                  # 2 (labels) or 3 (multi-label)
    channels: int = 1
    histogram: dict[int, int] = field(default_factory=dict)  # 2-D: value -> pixel count
    positives: tuple[int, ...] = ()            # 3-D: foreground pixels per channel
    pixels: int = 0
    encoding: str = ""                          # "01", "0255", "0", "labels"


@dataclass
class _TileScan:
    info: TileInfo | None = None
    problems: list[Problem] = field(default_factory=list)
    mask: _MaskStats | None = None
    band_min: np.ndarray | None = None
    band_max: np.ndarray | None = None


def _mask_stats(path: Path, data: np.ndarray) -> _MaskStats:
    """Summarise a channels-last mask; raise ValueError when its values fit no mask kind."""
    if data.dtype.kind == "f":
        if not np.isfinite(data).all():
            raise ValueError("has NaN or Inf values; a mask must hold integer class values")
        if not np.equal(np.floor(data), data).all():
            raise ValueError("has fractional values; a mask must hold integers "
                             "({0,1} or {0,255} binary, or labels 0..K-1)")
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    elif data.dtype.kind not in "iu":
        raise ValueError(f"has dtype {data.dtype}; save masks as uint8")
    lo, hi = (data.min(), data.max()) if data.size else (0, 0)
    if lo < 0:
        raise ValueError(f"has negative values (min {_num(float(lo))}); "
                         "masks hold 0 for background and positive class values")
    if data.ndim == 3 and data.shape[2] > 1:
        flat = data.reshape(-1, data.shape[2])
        values = set(np.unique(flat).tolist())
        if not (values <= {0, 1} or values <= {0, 255}):
            raise ValueError(
                f"is a {data.shape[2]}-channel multi-label mask with values "
                f"{_values_text(values)}; each channel must hold only {{0,1}} or {{0,255}}")
        positives = tuple(int(c) for c in np.count_nonzero(flat, axis=0))
        return _MaskStats(3, data.shape[2], positives=positives, pixels=flat.shape[0],
                          encoding="0255" if 255 in values else ("01" if 1 in values else "0"))
    flat = data.reshape(-1)
    if hi > 255:
        raise ValueError(
            f"has values up to {_num(float(hi))}; binary masks hold {{0,1}} or {{0,255}} and "
            f"label masks 0..K-1 with K <= {MAX_CLASSES}")
    counts = np.bincount(flat.astype(np.int64), minlength=1)
    histogram = {v: int(c) for v, c in enumerate(counts.tolist()) if c}
    values = set(histogram)
    if values <= {0}:
        encoding = "0"
    elif values <= {0, 1}:
        encoding = "01"
    elif values <= {0, 255}:
        encoding = "0255"
    elif max(values) < MAX_CLASSES:
        encoding = "labels"
    else:
        raise ValueError(
            f"has values {_values_text(values)}, which fit no mask kind: use {{0,1}} or "
            f"{{0,255}} for a binary mask, or labels 0..K-1 (K <= {MAX_CLASSES}) for classes")
    return _MaskStats(2, 1, histogram=histogram, pixels=flat.size, encoding=encoding)


def _values_text(values: set[int]) -> str:
    shown = sorted(values)
    text = ", ".join(str(v) for v in shown[:8])
    return "{" + text + (", ..." if len(shown) > 8 else "") + "}"


def _undecodable(path: Path, exc: Exception) -> Problem:
    return Problem(str(path), (
        f"pixel data cannot be decoded ({type(exc).__name__}: {exc}); "
        "the file is damaged or uses an unsupported codec: export it again"))


def _scan_pair(name: str, image_path: Path, mask_path: Path, *, pixel_stats: bool) -> _TileScan:
    """Check one image/mask pair; every problem goes into the result, nothing raises."""
    scan = _TileScan()
    image_header = mask_header = None
    try:
        image_header = _read_header(image_path)
        if image_header.dtype not in SUPPORTED_DTYPES:
            scan.problems.append(Problem(str(image_path), (
                f"has dtype {image_header.dtype}; supported are {', '.join(SUPPORTED_DTYPES)}: "
                "convert the tile (e.g. float64 to float32, int32 to int16 or uint16)")))
            image_header = None
    except ValueError as exc:
        scan.problems.append(Problem(str(image_path), str(exc)))
    try:
        mask_header = _read_header(mask_path)
    except ValueError as exc:
        scan.problems.append(Problem(str(mask_path), str(exc)))
    if image_header is not None and mask_header is not None and image_header.hw != mask_header.hw:
        ih, iw = image_header.hw
        mh, mw = mask_header.hw
        scan.problems.append(Problem(str(mask_path), (
            f"is {mh} x {mw} pixels but its image {image_path.name} is {ih} x {iw}; "
            "a mask must have the same height and width as its image")))
    if image_header is not None:
        h, w = image_header.hw
        scan.info = TileInfo(
            name=name, image_path=image_path, mask_path=mask_path, height=h, width=w,
            channels=image_header.bands, dtype=image_header.dtype, planar=image_header.axis == 0,
            compression=image_header.compression, geotags=image_header.geotags,
            mask_planar=mask_header is not None and mask_header.axis == 0)
        if pixel_stats or image_header.dtype == "float32":
            try:
                pixels = _read_pixels(image_path, image_header)
                pixels = pixels.reshape(pixels.shape[0], pixels.shape[1], -1)
                if pixels.dtype.kind == "f" and not np.isfinite(pixels).all():
                    bad = int(np.count_nonzero(~np.isfinite(pixels)))
                    scan.problems.append(Problem(str(image_path), (
                        f"has {bad} NaN or Inf pixel value{'s' if bad != 1 else ''}; replace them "
                        "(e.g. with the band's nodata or median value) or drop the tile")))
                elif pixel_stats:
                    scan.band_min = pixels.min(axis=(0, 1)).astype(np.float64)
                    scan.band_max = pixels.max(axis=(0, 1)).astype(np.float64)
            except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this file
                scan.problems.append(_undecodable(image_path, exc))
    if mask_header is not None:
        try:
            scan.mask = _mask_stats(mask_path, _read_pixels(mask_path, mask_header))
        except ValueError as exc:
            scan.problems.append(Problem(str(mask_path), str(exc)))
        except Exception as exc:  # noqa: BLE001 - any decoder failure is a problem of this file
            scan.problems.append(_undecodable(mask_path, exc))
    return scan


def _list_tiffs(folder: Path, problems: list[Problem]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or path.suffix.lower() not in _SUFFIXES or not path.is_file():
            continue
        if path.stem in found:
            problems.append(Problem(str(path), (
                f"has the same name as {found[path.stem].name}; keep one file per tile name")))
            continue
        found[path.stem] = path
    return found


def scan_dataset(root: str | PathLike[str], *, patch_size: int | None = None,
                 pixel_stats: bool = True, workers: int | None = None) -> DatasetInfo:
    """Discover and validate the dataset under ``root``.

    Headers are read first (shape, dtype, compression, truncation); then each
    mask is read (its values decide the mask kind and the class balance) and
    each image is read for its per-band value range and, for float tiles, a
    NaN/Inf check. With ``pixel_stats=False`` only float images are read and
    ``band_ranges`` is empty (faster on large datasets). Files are read by
    ``workers`` threads (default: up to 8), one file handle per read.

    A tile smaller than ``patch_size`` on either side is a warning (it will be
    padded), not a problem.

    Returns:
        The :class:`DatasetInfo`, with tiles sorted by name.

    Raises:
        DatasetError: listing every problem found (missing or empty folders,
            unpaired files, unreadable or truncated TIFFs, unsupported dtypes,
            channel counts differing from the majority, mask size mismatches,
            mask values that fit no mask kind or disagree on the kind, NaN/Inf).
    """
    root = Path(root)
    problems: list[Problem] = []
    warnings: list[str] = []
    if not root.is_dir():
        raise DatasetError([Problem(str(root), (
            "folder does not exist; point to a folder holding images/ and masks/ subfolders"
            if not root.exists() else "is not a folder; point to a folder holding images/ and masks/"))])
    folders: dict[str, dict[str, Path]] = {}
    for sub in ("images", "masks"):
        folder = root / sub
        if not folder.is_dir():
            problems.append(Problem(str(folder), (
                f"folder is missing; create {sub}/ in {root} and put the "
                f"{'image' if sub == 'images' else 'mask'} tiles (<name>.tif) there")))
            continue
        folders[sub] = _list_tiffs(folder, problems)
        if not folders[sub]:
            problems.append(Problem(str(folder), (
                f"folder holds no .tif or .tiff files; put the "
                f"{'image' if sub == 'images' else 'mask'} tiles (<name>.tif) there")))
    if problems:
        raise DatasetError(problems)
    images, masks = folders["images"], folders["masks"]
    for name in sorted(set(images) - set(masks)):
        problems.append(Problem(str(images[name]), (
            f"has no mask: add masks/{name}.tif (same name, same height and width) "
            "or remove the image")))
    for name in sorted(set(masks) - set(images)):
        problems.append(Problem(str(masks[name]), (
            f"has no image: add images/{name}.tif or remove the mask")))
    names = sorted(set(images) & set(masks))
    if workers is None:
        workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        scans = list(pool.map(
            lambda n: _scan_pair(n, images[n], masks[n], pixel_stats=pixel_stats), names))
    for scan in scans:
        problems.extend(scan.problems)
    tiles = [s.info for s in scans if s.info is not None]

    channels = _majority_channels(tiles, problems)
    kind, num_outputs, mask_values, fractions, empty = _decide_mask_kind(
        [(s.info.mask_path if s.info else None, s.mask) for s in scans], problems, warnings)
    if problems:
        raise DatasetError(problems)

    if patch_size is not None:
        small = [t for t in tiles if t.height < patch_size or t.width < patch_size]
        for tile in small[:_LISTED_WARNINGS]:
            warnings.append(
                f"{tile.image_path}: {tile.height} x {tile.width} is smaller than the "
                f"{patch_size} x {patch_size} patch; it will be padded with zeros")
        if len(small) > _LISTED_WARNINGS:
            warnings.append(
                f"{len(small) - _LISTED_WARNINGS} more tiles are smaller than the "
                f"{patch_size} x {patch_size} patch and will be padded with zeros")
    band_ranges: tuple[tuple[float, float], ...] = ()
    if pixel_stats:
        mins = np.min([s.band_min for s in scans], axis=0)
        maxs = np.max([s.band_max for s in scans], axis=0)
        band_ranges = tuple((float(lo), float(hi)) for lo, hi in zip(mins, maxs))
    dtypes = {t.dtype for t in tiles}
    return DatasetInfo(
        root=root, tiles=tuple(tiles), channels=channels,
        dtype=dtypes.pop() if len(dtypes) == 1 else "mixed",
        mask_kind=kind, num_outputs=num_outputs,
        activation="softmax" if kind == "multiclass" else "sigmoid",
        mask_values=mask_values, foreground_fraction=fractions, empty_masks=empty,
        band_ranges=band_ranges, warnings=tuple(warnings))


def _majority_channels(tiles: Sequence[TileInfo], problems: list[Problem]) -> int:
    counts = Counter(t.channels for t in tiles)
    if not counts:
        return 0
    channels, majority = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
    for tile in tiles:
        if tile.channels != channels:
            problems.append(Problem(str(tile.image_path), (
                f"has {tile.channels} band{'s' if tile.channels != 1 else ''} but {majority} of "
                f"{len(tiles)} tiles have {channels}; every tile must have the same bands "
                "(re-export it with the same bands, or move it out of the folder)")))
    return channels


def _decide_mask_kind(
    masks: Sequence[tuple[Path | None, _MaskStats | None]],
    problems: list[Problem],
    warnings: list[str],
) -> tuple[MaskKind, int, tuple[int, ...], tuple[float, ...], int]:
    """Agree on one mask kind across all masks; record disagreements as problems.

    Returns (kind, num_outputs, mask_values, foreground_fraction, empty_masks).
    """
    good = [(p, m) for p, m in masks if p is not None and m is not None]
    if not good:
        return "binary", 1, (0, 1), (0.0,), 0
    flat = [(p, m) for p, m in good if m.ndim == 2]
    multi = [(p, m) for p, m in good if m.ndim == 3]
    if flat and multi:
        minority = multi if len(multi) < len(flat) else flat
        expected = "2-D (H, W)" if minority is multi else "multi-label (H, W, K)"
        for path, stats in minority:
            found = (f"multi-label with {stats.channels} channels" if stats.ndim == 3 else "2-D")
            problems.append(Problem(str(path), (
                f"is a {found} mask but most masks are {expected}; all masks must be one kind: "
                "save it like the others")))
        return "binary", 1, (0, 1), (0.0,), 0
    if multi:
        counts = Counter(m.channels for _, m in multi)
        k, _ = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        for path, stats in multi:
            if stats.channels != k:
                problems.append(Problem(str(path), (
                    f"has {stats.channels} label channels but most multi-label masks have {k}; "
                    "every mask must have the same labels")))
        pixels = sum(m.pixels for _, m in multi)
        positives = np.sum([m.positives for _, m in multi if m.channels == k], axis=0)
        values = {0} | {1 if m.encoding == "01" else 255 for _, m in multi if m.encoding != "0"}
        empty = sum(1 for _, m in multi if not any(m.positives))
        fractions = tuple(float(c) / pixels for c in positives)
        return "multilabel", k, tuple(sorted(values)), fractions, empty
    encodings = Counter(m.encoding for _, m in flat)
    values_seen = sorted(set().union(*(m.histogram for _, m in flat)))
    pixels = sum(m.pixels for _, m in flat)
    empty = encodings.get("0", 0)
    if encodings.get("labels"):
        for path, stats in flat:
            if stats.encoding == "0255":
                problems.append(Problem(str(path), (
                    "has values {0,255} (a binary mask) but other masks hold class labels "
                    f"(up to {max(values_seen)}); all masks must be one kind: use labels 0..K-1")))
        k = max(v for v in values_seen if v < MAX_CLASSES) + 1
        totals = np.zeros(k, dtype=np.int64)
        for _, stats in flat:
            for value, count in stats.histogram.items():
                if value < k:
                    totals[value] += count
        fractions = tuple(float(c) / pixels for c in totals)
        return "multiclass", k, tuple(values_seen), fractions, empty
    if encodings.get("01") and encodings.get("0255"):
        warnings.append(
            f"{encodings['01']} masks use {{0,1}} and {encodings['0255']} use {{0,255}}; "
            "both are read as binary (any non-zero value is foreground)")
    if encodings.get("0") == len(flat):
        warnings.append("every mask is empty (no foreground at all): the model has nothing to learn")
    foreground = sum(m.pixels - m.histogram.get(0, 0) for _, m in flat)
    values = tuple(values_seen) if len(values_seen) > 1 else (0, 1)
    return "binary", 1, values, (float(foreground) / pixels,), empty


# --------------------------------------------------------------------------- read / write


def _is_planar(series: Any) -> bool:
    """True when the bands are stored as separate planes (planar config or one page per band)."""
    page = series.pages[0] if series.pages else None
    return int(getattr(page, "planarconfig", 1)) == 2 or len(series.pages) > 1


def _read_array(path: Path) -> np.ndarray:
    """Read a TIFF's pixels channels-last, (H, W) or (H, W, C), opening the file once."""
    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            shape = _squeezed(tuple(int(d) for d in series.shape))
            axis = _channel_axis(shape, _is_planar(series))
            data = series.asarray().reshape(shape)
    except Exception as exc:  # noqa: BLE001 - any failure means the file changed since the scan
        raise DatasetError([Problem(str(path), (
            f"cannot be read ({type(exc).__name__}: {exc}); it changed since the dataset was "
            "scanned: check the file and scan the dataset again"))]) from exc
    return np.moveaxis(data, 0, -1) if axis == 0 else data


def read_image(tile: TileInfo) -> np.ndarray:
    """Read a tile's image.

    Returns:
        The pixels as (H, W, C) in the file's dtype.

    Raises:
        DatasetError: if the file can no longer be read or its size changed.
    """
    data = _read_array(tile.image_path)
    data = data.reshape(data.shape[0], data.shape[1], -1)
    if data.shape != (tile.height, tile.width, tile.channels):
        raise DatasetError([Problem(str(tile.image_path), (
            f"now has shape {data.shape}, not {(tile.height, tile.width, tile.channels)} as when "
            "the dataset was scanned; scan the dataset again"))])
    return data


def read_mask_array(tile: TileInfo) -> np.ndarray:
    """Read a tile's mask as stored, channels last.

    Returns:
        (H, W, K) in the file's dtype (K = 1 for 2-D masks); convert with
        :func:`mask_targets`. Cropping before converting saves memory and time.

    Raises:
        DatasetError: if the mask cannot be read or its size differs from the image's.
    """
    data = _read_array(tile.mask_path)
    h, w = data.shape[:2]
    if (h, w) != (tile.height, tile.width):
        raise DatasetError([Problem(str(tile.mask_path), (
            f"is {h} x {w} pixels but its image is {tile.height} x {tile.width}; "
            "a mask must have the same height and width as its image"))])
    return data.reshape(h, w, -1)


def mask_targets(mask: np.ndarray, *, kind: MaskKind, num_outputs: int) -> np.ndarray:
    """Convert a stored mask (H, W, K) (or a crop of it) into training targets.

    Returns:
        float32 (H, W, num_outputs) of 0/1: binary -> any non-zero value is
        foreground (so {0,255} maps to {0,1}); multiclass -> one-hot over
        labels 0..num_outputs-1; multilabel -> non-zero is 1 per channel.

    Raises:
        ValueError: for an unknown ``kind``, labels outside 0..num_outputs-1 or
            a channel count that differs from ``num_outputs``.
    """
    if kind == "binary":
        return (mask[..., :1] != 0).astype(np.float32)
    if kind == "multiclass":
        labels = mask[..., 0].astype(np.intp)
        if labels.min(initial=0) < 0 or labels.max(initial=0) >= num_outputs:
            raise ValueError(f"mask has labels outside 0..{num_outputs - 1}")
        return np.eye(num_outputs, dtype=np.float32)[labels]
    if kind == "multilabel":
        if mask.shape[-1] != num_outputs:
            raise ValueError(f"mask has {mask.shape[-1]} label channels, expected {num_outputs}")
        return (mask != 0).astype(np.float32)
    raise ValueError(f"kind must be one of 'binary', 'multiclass', 'multilabel', not {kind!r}")


def read_mask(tile: TileInfo, *, kind: MaskKind, num_outputs: int) -> np.ndarray:
    """Read a tile's mask as training targets.

    Returns:
        float32 (H, W, num_outputs) of 0/1: binary -> (H, W, 1), any non-zero
        value is foreground (so {0,255} maps to {0,1}); multiclass -> one-hot
        over labels 0..num_outputs-1; multilabel -> channels last, non-zero is 1.

    Raises:
        DatasetError: if the mask cannot be read or does not fit ``kind``
            (e.g. it changed since the scan).
        ValueError: for an unknown ``kind``.
    """
    if kind not in ("binary", "multiclass", "multilabel"):
        raise ValueError(f"kind must be one of 'binary', 'multiclass', 'multilabel', not {kind!r}")
    try:
        return mask_targets(read_mask_array(tile), kind=kind, num_outputs=num_outputs)
    except DatasetError:
        raise
    except ValueError as exc:
        raise DatasetError([Problem(str(tile.mask_path), f"{exc}; scan the dataset again")]) from exc


def _geotag_entries(geotags: Mapping[int, Any]) -> list[tuple[int, int, int, Any, bool]]:
    entries = []
    for code in sorted(geotags):
        value = geotags[code]
        ttype = _GEOTAG_TYPES.get(code)
        if ttype is None:
            continue
        if ttype == 2:
            text = value.decode() if isinstance(value, bytes) else str(value)
            entries.append((code, 2, 0, text, True))
            continue
        values = tuple(np.ravel(np.asarray(value)).tolist())
        entries.append((code, ttype, len(values), values, True))
    return entries


def write_geotiff(path: str | PathLike[str], array: np.ndarray, *, like: TileInfo | None = None,
                  compression: str = "deflate") -> None:
    """Write ``array`` (H, W) or (H, W, K) as a TIFF, atomically.

    With ``like``, that tile's GeoTIFF tags are copied so the file opens
    aligned with its source tile in a GIS. The file is written to a temporary
    name beside ``path`` and renamed into place, so a reader never sees a
    half-written file.

    Raises:
        ValueError: for an array that is not 2-D or 3-D, a size differing from
            ``like``'s, or an unknown compression.
        OSError: if the file cannot be written.
    """
    path = Path(path)
    array = np.asarray(array)
    if array.ndim not in (2, 3):
        raise ValueError(f"array must be (H, W) or (H, W, K), not shape {array.shape}")
    if like is not None and array.shape[:2] != (like.height, like.width):
        raise ValueError(f"array is {array.shape[0]} x {array.shape[1]} but tile {like.name!r} "
                         f"is {like.height} x {like.width}; georeferencing would not line up")
    codecs = {"none": None, "deflate": "deflate", "lzw": "lzw", "zstd": "zstd"}
    if compression not in codecs:
        raise ValueError(f"compression must be one of {', '.join(codecs)}, not {compression!r}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tifffile.imwrite(
            tmp, array, photometric="minisblack",
            planarconfig="contig" if array.ndim == 3 else None,
            compression=codecs[compression],
            extratags=_geotag_entries(like.geotags) if like is not None else [],
        )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
