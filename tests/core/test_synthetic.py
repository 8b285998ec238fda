"""core.synthetic: deterministic, learnable, marked complete, options checked."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.synthetic import COMPLETE_MARKER, make_dataset
from core.tiles import read_image, read_mask, scan_dataset


def arrays(root: Path) -> list[np.ndarray]:
    info = scan_dataset(root)
    out = []
    for tile in info.tiles:
        out += [read_image(tile), read_mask(tile, kind=info.mask_kind, num_outputs=info.num_outputs)]
    return out


def test_same_seed_same_data_other_seed_other_data(synth_data, tmp_path: Path) -> None:
    first = synth_data(tiles=3, size=48, seed=5)
    again = make_dataset(tmp_path / "again", tiles=3, size=48, seed=5)
    other = make_dataset(tmp_path / "other", tiles=3, size=48, seed=6)
    for a, b in zip(arrays(first), arrays(again)):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(arrays(first), arrays(other)))


def test_layout_and_completion_marker(tmp_path: Path) -> None:
    out = make_dataset(tmp_path / "d", tiles=3, size=32)
    assert out == tmp_path / "d"
    assert sorted(p.name for p in (out / "images").iterdir()) == [
        "tile_0000.tif", "tile_0001.tif", "tile_0002.tif"]
    assert sorted(p.name for p in (out / "masks").iterdir()) == sorted(
        p.name for p in (out / "images").iterdir())
    assert (out / COMPLETE_MARKER).is_file()


def test_regenerating_removes_stale_tiles(tmp_path: Path) -> None:
    make_dataset(tmp_path, tiles=4, size=32)
    make_dataset(tmp_path, tiles=2, size=32)
    assert len(scan_dataset(tmp_path).tiles) == 2


def test_empty_fraction_gives_that_many_empty_masks(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=10, size=48, empty_fraction=0.3))
    assert info.empty_masks == 3


def test_scenes_are_learnable(synth_data) -> None:
    """Foreground and background differ in every band by far more than the noise."""
    info = scan_dataset(synth_data(tiles=4, size=96))
    for tile in info.tiles:
        pixels = read_image(tile).astype(np.float64)
        mask = read_mask(tile, kind="binary", num_outputs=1)[..., 0] > 0
        assert 0.01 < mask.mean() < 0.9
        gap = np.abs(pixels[mask].mean(axis=0) - pixels[~mask].mean(axis=0))
        assert (gap > 150).all(), gap
        assert 200 < pixels.min() and pixels.max() < 5000


def test_multiclass_has_every_class_in_every_tile(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=3, size=48, classes=5))
    for tile in info.tiles:
        onehot = read_mask(tile, kind="multiclass", num_outputs=5)
        assert (onehot.sum(axis=(0, 1)) > 0).all()


@pytest.mark.parametrize("option, value", [
    ("tiles", 0), ("size", 4), ("channels", 0), ("channels", 33), ("classes", 0),
    ("empty_fraction", 1.5), ("planar", "sometimes"), ("compression", "jpeg"),
    ("dtype", "float64"), ("mask_values", "01255"),
])
def test_invalid_options_name_the_option(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        make_dataset(tmp_path, **{option: value})
    assert not (tmp_path / COMPLETE_MARKER).exists()


def test_multilabel_needs_two_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="classes"):
        make_dataset(tmp_path, multilabel=True, classes=1)
