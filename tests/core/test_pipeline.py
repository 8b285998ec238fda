"""core.pipeline: split, normalisation, deterministic streamed batches, augmentation, padding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from core.pipeline import (
    Normalization,
    Split,
    compute_normalization,
    load_tile,
    make_train_dataset,
    make_val_dataset,
    split_tiles,
    steps_per_pass,
)
from core.tiles import TileInfo, scan_dataset
from tests.core.conftest import write_pair

NONE3 = Normalization("none", (0.0,) * 3, (1.0,) * 3)


def batches(dataset, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(count)]


def threshold_tiles(root: Path, sizes: list[int]) -> list[TileInfo]:
    """Tiles whose mask is exactly band 0 > 100 (and bands 1, 2 are coordinates)."""
    rng = np.random.default_rng(1)
    for i, size in enumerate(sizes):
        band0 = rng.integers(1, 200, (size, size))
        yy, xx = np.mgrid[:size, :size]
        image = np.stack([band0, yy + 1, xx + 1], axis=-1).astype(np.uint16)
        write_pair(root, f"t{i}", image, (band0 > 100).astype(np.uint8))
    return list(scan_dataset(root).tiles)


# --------------------------------------------------------------------------- split


def test_split_is_seeded_disjoint_and_complete() -> None:
    names = [f"tile_{i:03d}" for i in range(20)]
    split = split_tiles(names, val_fraction=0.3, seed=3)
    assert len(split.val) == 6 and len(split.train) == 14
    assert not set(split.train) & set(split.val)
    assert sorted(split.train + split.val) == names
    assert list(split.train) == sorted(split.train) and list(split.val) == sorted(split.val)
    assert split_tiles(list(reversed(names)), val_fraction=0.3, seed=3) == split
    assert split_tiles(names, val_fraction=0.3, seed=4) != split


@pytest.mark.parametrize("n, fraction, n_val", [(2, 0.1, 1), (2, 0.9, 1), (5, 0.0, 0), (1, 0.5, 0)])
def test_split_keeps_one_val_and_one_train_tile(n: int, fraction: float, n_val: int) -> None:
    split = split_tiles([f"t{i}" for i in range(n)], val_fraction=fraction, seed=0)
    assert len(split.val) == n_val and len(split.train) == n - n_val


def test_split_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="val_fraction"):
        split_tiles(["a", "b"], val_fraction=1.0, seed=0)
    with pytest.raises(ValueError, match="unique"):
        split_tiles(["a", "a"], val_fraction=0.5, seed=0)
    assert isinstance(split_tiles(["a", "b"], val_fraction=0.5, seed=0), Split)


# --------------------------------------------------------------------------- normalisation


def test_percentile_normalization_uses_only_the_given_train_tiles(tmp_path: Path) -> None:
    train_values = np.arange(16 * 16 * 2, dtype=np.uint16).reshape(16, 16, 2)
    write_pair(tmp_path, "train", train_values, np.zeros((16, 16), np.uint8))
    write_pair(tmp_path, "val", train_values + 30000, np.zeros((16, 16), np.uint8))
    tiles = {t.name: t for t in scan_dataset(tmp_path).tiles}
    norm = compute_normalization([tiles["train"]], method="percentile", seed=0)
    # The sample covers every pixel of the one 16x16 train tile, so the figures are exact.
    p2, p98 = np.percentile(train_values.reshape(-1, 2).astype(float), [2, 98], axis=0)
    assert norm.offset == pytest.approx(tuple(p2))
    assert norm.scale == pytest.approx(tuple(p98 - p2))
    zscore = compute_normalization([tiles["train"]], method="zscore", seed=0)
    assert zscore.offset == pytest.approx(tuple(train_values.reshape(-1, 2).mean(axis=0)))
    none = compute_normalization([tiles["train"]], method="none", seed=0)
    assert (none.offset, none.scale) == ((0.0, 0.0), (1.0, 1.0))


def test_normalization_sample_is_bounded_and_seeded(synth_data) -> None:
    tiles = scan_dataset(synth_data(tiles=4, size=64)).tiles
    a = compute_normalization(tiles, method="percentile", seed=0, sample_pixels=500)
    b = compute_normalization(tiles, method="percentile", seed=0, sample_pixels=500)
    assert a == b and len(a.offset) == 6 and all(s > 0 for s in a.scale)


def test_constant_band_gets_scale_one(tmp_path: Path) -> None:
    pixels = np.full((8, 8, 2), 7, np.uint16)
    write_pair(tmp_path, "a", pixels, np.zeros((8, 8), np.uint8))
    norm = compute_normalization(scan_dataset(tmp_path).tiles, method="zscore", seed=0)
    assert norm.scale == (1.0, 1.0) and norm.offset == (7.0, 7.0)


def test_normalization_record_round_trip_and_apply() -> None:
    norm = Normalization("percentile", (10.0, 20.0), (2.0, 4.0))
    assert Normalization.from_dict(norm.to_dict()) == norm
    out = norm.apply(np.array([[[12, 28]]], np.uint16))
    assert out.dtype == np.float32 and out.tolist() == [[[1.0, 2.0]]]
    with pytest.raises(ValueError):
        Normalization.from_dict({"method": "percentile"})
    with pytest.raises(ValueError, match="method"):
        Normalization("minmax", (0.0,), (1.0,))


# --------------------------------------------------------------------------- train stream


def test_steps_per_pass() -> None:
    assert steps_per_pass(10, batch_size=4) == 3
    assert steps_per_pass(8, batch_size=4) == 2
    assert steps_per_pass(1, batch_size=4) == 1
    assert steps_per_pass(0, batch_size=4) == 1


def test_train_batches_are_deterministic_per_epoch(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=5, size=64))
    norm = compute_normalization(info.tiles, method="percentile", seed=0)
    options = dict(kind="binary", num_outputs=1, normalization=norm, patch_size=32,
                   batch_size=3, augment="dihedral", seed=11, steps_per_epoch=2)
    full = batches(make_train_dataset(info.tiles, **options), 6)
    assert full[0][0].shape == (3, 32, 32, 6) and full[0][0].dtype == np.float32
    assert full[0][1].shape == (3, 32, 32, 1)
    resumed = batches(make_train_dataset(info.tiles, first_epoch=2, **options), 2)
    for (x, y), (rx, ry) in zip(full[4:], resumed):
        np.testing.assert_array_equal(x, rx)
        np.testing.assert_array_equal(y, ry)
    assert not np.array_equal(full[0][0], full[2][0])  # epochs differ from each other
    other_seed = batches(make_train_dataset(info.tiles, **{**options, "seed": 12}), 1)
    assert not np.array_equal(full[0][0], other_seed[0][0])


def test_augmentation_moves_image_and_mask_together(tmp_path: Path) -> None:
    tiles = threshold_tiles(tmp_path, [40, 40])
    seen_orientations = set()
    for augment in ("flips", "dihedral"):
        data = make_train_dataset(tiles, kind="binary", num_outputs=1, normalization=NONE3,
                                  patch_size=24, batch_size=4, augment=augment, seed=0,
                                  steps_per_epoch=4)
        for x, y in batches(data, 8):
            np.testing.assert_array_equal(y[..., 0], (x[..., 0] > 100).astype(np.float32))
            for crop in x:
                # bands 1 and 2 are row and column: their gradients reveal the transform
                dy = np.sign(crop[1, 0, 1:] - crop[0, 0, 1:])
                dx = np.sign(crop[0, 1, 1:] - crop[0, 0, 1:])
                seen_orientations.add((augment, *dy.tolist(), *dx.tolist()))
    assert len({o[1:] for o in seen_orientations if o[0] == "flips"}) == 4
    assert len({o[1:] for o in seen_orientations if o[0] == "dihedral"}) == 8


def test_no_augmentation_keeps_orientation(tmp_path: Path) -> None:
    tiles = threshold_tiles(tmp_path, [40])
    data = make_train_dataset(tiles, kind="binary", num_outputs=1, normalization=NONE3,
                              patch_size=16, batch_size=2, augment="none", seed=0,
                              steps_per_epoch=2)
    for x, _ in batches(data, 2):
        assert (np.diff(x[..., 1], axis=1) == 1).all() and (np.diff(x[..., 2], axis=2) == 1).all()


def test_small_tiles_are_zero_padded(tmp_path: Path) -> None:
    tiles = threshold_tiles(tmp_path, [20])
    data = make_train_dataset(tiles, kind="binary", num_outputs=1, normalization=NONE3,
                              patch_size=32, batch_size=2, augment="none", seed=0,
                              steps_per_epoch=1)
    (x, y), = batches(data, 1)
    assert x.shape == (2, 32, 32, 3)
    assert (x[:, 20:] == 0).all() and (x[:, :, 20:] == 0).all()
    assert (y[:, 20:] == 0).all() and (y[:, :, 20:] == 0).all()
    assert (x[:, :20, :20, 1] == np.arange(1, 21)[:, None]).all()


def test_multiclass_targets_are_one_hot(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=3, size=64, classes=3))
    norm = compute_normalization(info.tiles, method="zscore", seed=0)
    data = make_train_dataset(info.tiles, kind="multiclass", num_outputs=3, normalization=norm,
                              patch_size=32, batch_size=2, augment="dihedral", seed=0,
                              steps_per_epoch=0)
    (x, y), = batches(data, 1)
    assert y.shape == (2, 32, 32, 3)
    np.testing.assert_array_equal(y.sum(axis=-1), 1.0)


def test_invalid_train_options(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=2, size=32))
    norm = Normalization("none", (0.0,) * 6, (1.0,) * 6)
    base = dict(kind="binary", num_outputs=1, normalization=norm, patch_size=16, batch_size=2,
                augment="dihedral", seed=0, steps_per_epoch=1)
    with pytest.raises(ValueError, match="augment"):
        make_train_dataset(info.tiles, **{**base, "augment": "rotate"})
    with pytest.raises(ValueError, match="bands"):
        make_train_dataset(info.tiles, **{**base, "normalization": NONE3})


# --------------------------------------------------------------------------- val set and full tiles


def test_val_set_is_a_fixed_grid(tmp_path: Path) -> None:
    tiles = threshold_tiles(tmp_path, [40, 20])
    options = dict(kind="binary", num_outputs=1, normalization=NONE3, patch_size=16,
                   batch_size=4, seed=0)
    first = batches(make_val_dataset(tiles, **options), 100)
    again = batches(make_val_dataset(tiles, **{**options, "seed": 9}), 100)
    assert len(first) == 4  # 3x3 windows on the 40 px tile + 2x2 on the 20 px tile = 13
    assert [x.shape[0] for x, _ in first] == [4, 4, 4, 1]
    for (x, y), (ax, ay) in zip(first, again):
        np.testing.assert_array_equal(x, ax)
        np.testing.assert_array_equal(y, ay)
    windows = np.concatenate([x for x, _ in first])
    assert [w[0, 0, 1] for w in windows[:3]] == [1, 1, 1]      # first row of windows
    assert [w[0, 0, 2] for w in windows[:3]] == [1, 13, 25]    # columns 0, 12, 24 (flush end)
    assert int(make_val_dataset(tiles, **options).cardinality()) == 4


def test_load_tile_gives_full_size_normalised_arrays(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=2, size=48, planar=True))
    norm = compute_normalization(info.tiles, method="percentile", seed=0)
    image, mask = load_tile(info.tiles[0], normalization=norm, kind="binary", num_outputs=1)
    assert image.shape == (48, 48, 6) and image.dtype == np.float32
    assert mask.shape == (48, 48, 1)
    assert -1.0 < float(np.median(image)) < 2.0


@pytest.mark.parametrize("layout", [dict(), dict(compression="deflate"), dict(planar=True),
                                    dict(compression="lzw", planar=True)])
def test_window_reads_match_whole_tile_reads(synth_data, layout) -> None:
    """Memory-mapped and strip-wise window reads give exactly the crops of a whole-tile read."""
    from core.pipeline import _CROP_KEY, _WindowReader, _epoch_crops, _transform  # noqa: F401
    from core.tiles import read_image, read_mask_array

    info = scan_dataset(synth_data(tiles=3, size=70, **layout))
    norm = compute_normalization(info.tiles, method="percentile", seed=0)
    reader = _WindowReader(info.tiles, kind="binary", num_outputs=1, normalization=norm,
                           patch_size=32)
    sizes = np.array([70, 70, 70])
    rows = _epoch_crops(sizes, sizes, 12, 4, 32, "dihedral", 5, 1)
    x, y = reader.batch_crops(rows)
    for i, (tile, _read, top, left, code) in enumerate(rows):
        image = read_image(info.tiles[tile])[top:top + 32, left:left + 32]
        mask = read_mask_array(info.tiles[tile])[top:top + 32, left:left + 32, :1] != 0
        np.testing.assert_allclose(x[i], _transform(norm.apply(image), code), rtol=1e-6,
                                   atol=1e-6)
        np.testing.assert_array_equal(y[i], _transform(mask, code).astype(np.float32))
