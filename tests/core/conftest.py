"""Shared fixtures for tests/core: synthetic datasets and hand-made tiles.

``synth_data(**make_dataset_kwargs) -> Path`` makes a dataset with
:func:`core.synthetic.make_dataset` once per distinct set of arguments for the
whole session (treat the folder as read-only). ``write_pair`` writes one
hand-made image/mask pair for exact-value tests.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

from core.synthetic import make_dataset


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """A factory: ``synth_data(tiles=4, size=64, ...)`` -> dataset folder, cached per kwargs."""
    made: dict[tuple[tuple[str, Any], ...], Path] = {}

    def make(**kwargs: Any) -> Path:
        key = tuple(sorted(kwargs.items()))
        if key not in made:
            made[key] = make_dataset(tmp_path_factory.mktemp("synth"), **kwargs)
        return made[key]

    return make


def write_pair(root: Path, name: str, image: np.ndarray | None, mask: np.ndarray | None, *,
               planar: bool = False, compression: str | None = None) -> None:
    """Write images/<name>.tif and masks/<name>.tif under ``root`` (None skips one).

    ``image`` is given channels-last (H, W, C) or (H, W); ``planar=True`` stores
    it (C, H, W) with the planar configuration set.
    """
    for sub, array in (("images", image), ("masks", mask)):
        (root / sub).mkdir(parents=True, exist_ok=True)
        if array is None:
            continue
        separate = planar and sub == "images" and array.ndim == 3
        if separate:
            array = np.ascontiguousarray(np.moveaxis(array, -1, 0))
        tifffile.imwrite(
            root / sub / f"{name}.tif", array, photometric="minisblack",
            planarconfig=None if array.ndim == 2 else ("separate" if separate else "contig"),
            compression=compression)
