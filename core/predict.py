"""Predict full tiles with a run's checkpoint and write georeferenced TIFFs.

Each output has exactly its source tile's height and width and carries its
GeoTIFF tags, so it opens aligned with the input in QGIS. Sigmoid models
write float32 probabilities (H, W[, K]); softmax models write a uint8 class
map (H, W). The run's own normalisation is applied. Masks are not needed.
This module never imports Qt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.runstore import RunError, is_run_dir
from core.tiles import DatasetError, Problem, TileInfo, _read_header, read_image, write_geotiff

__all__ = ["checkpoint_for", "image_tiles", "predict_tiles", "PredictionSummary"]


@dataclass(frozen=True)
class PredictionSummary:
    """What :func:`predict_tiles` wrote."""

    checkpoint: Path
    outputs: tuple[Path, ...]


def checkpoint_for(run_dir: str | os.PathLike[str], *, epoch: int | None = None) -> Path:
    """The checkpoint to predict with: ``epoch-NNNN.keras``, else best, else last.

    Raises:
        RunError: not a run, or it has no (such) checkpoint.
    """
    run = Path(run_dir)
    if not is_run_dir(run):
        raise RunError(f"{run}: not a Tilewatch run (no run.json); give a run folder to --run")
    ckdir = run / "checkpoints"
    if epoch is not None:
        path = ckdir / f"epoch-{epoch:04d}.keras"
        if not path.is_file():
            have = sorted(p.stem.split("-")[1].lstrip("0") or "0" for p in ckdir.glob("epoch-*.keras"))
            raise RunError(
                f"{path}: no checkpoint for epoch {epoch}; epochs with checkpoints: "
                f"{', '.join(have) if have else 'none'}"
            )
        return path
    for name in ("best.keras", "last.keras"):
        if (ckdir / name).is_file():
            return ckdir / name
    raise RunError(f"{run}: the run has no checkpoint yet (it must finish at least one epoch)")


def image_tiles(data_dir: str | os.PathLike[str]) -> list[TileInfo]:
    """The image tiles of ``DATA/images/`` (or of ``DATA`` itself), masks optional.

    Raises:
        DatasetError: no TIFFs, or files that cannot be read (every one named).
    """
    root = Path(data_dir)
    folder = root / "images" if (root / "images").is_dir() else root
    if not folder.is_dir():
        raise DatasetError([Problem(str(root), "folder not found; give the folder that holds images/")])
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".tif", ".tiff") and p.is_file())
    if not paths:
        raise DatasetError([Problem(str(folder), "holds no .tif/.tiff images")])
    tiles, problems = [], []
    for path in paths:
        try:
            header = _read_header(path)
        except ValueError as exc:
            problems.append(Problem(str(path), str(exc)))
            continue
        h, w = header.hw
        tiles.append(
            TileInfo(
                name=path.stem,
                image_path=path,
                mask_path=path,
                height=h,
                width=w,
                channels=header.bands,
                dtype=header.dtype,
                planar=header.axis == 0,
                compression=header.compression,
                geotags=header.geotags,
            )
        )
    if problems:
        raise DatasetError(problems)
    return tiles


def predict_tiles(
    run_dir: str | os.PathLike[str],
    *,
    data_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    epoch: int | None = None,
    progress: Callable[[int, int, str], None] | None = None,
) -> PredictionSummary:
    """Predict every image tile of ``data_dir`` into ``out_dir/<name>.tif``.

    Raises:
        RunError: bad run or missing checkpoint.
        DatasetError: unreadable tiles, or a band count the model cannot take.
    """
    import keras

    from core.model import predict_full
    from core.pipeline import Normalization

    ckpt = checkpoint_for(run_dir, epoch=epoch)
    info = json.loads((Path(run_dir) / "run.json").read_text(encoding="utf-8"))
    tiles = image_tiles(data_dir)
    channels = int(info.get("dataset", {}).get("channels", tiles[0].channels))
    wrong = [Problem(str(t.image_path), f"has {t.channels} bands; the model was trained on {channels}") for t in tiles if t.channels != channels]
    if wrong:
        raise DatasetError(wrong)
    normalization = Normalization.from_dict(info["normalization"])
    activation = info.get("dataset", {}).get("activation", "sigmoid")
    model = keras.saving.load_model(ckpt, compile=False, safe_mode=True)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for i, tile in enumerate(tiles):
        image = normalization.apply(read_image(tile))
        probs = predict_full(model, image)
        if activation == "softmax":
            result = np.argmax(probs, axis=-1).astype(np.uint8)
        else:
            result = probs[..., 0] if probs.shape[-1] == 1 else probs
        path = out / f"{tile.name}.tif"
        write_geotiff(path, result, like=tile)
        written.append(path)
        if progress is not None:
            progress(i + 1, len(tiles), tile.name)
    return PredictionSummary(checkpoint=ckpt, outputs=tuple(written))
