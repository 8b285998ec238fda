"""core.tiles: every supported tile loads; every bad input is named with its fix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.tiles import DatasetError, Problem, read_image, read_mask, scan_dataset, write_geotiff
from tests.core.conftest import write_pair

RNG = np.random.default_rng(0)


def image(h: int = 16, w: int = 16, c: int = 3, dtype: str = "uint16") -> np.ndarray:
    return RNG.integers(1, 200, (h, w, c)).astype(dtype)


def binary_mask(h: int = 16, w: int = 16) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    mask[:4, :8] = 1  # 32 of 256 pixels
    return mask


def good_folder(root: Path, n: int = 3) -> Path:
    for i in range(n):
        write_pair(root, f"t{i}", image(), binary_mask())
    return root


def problems_of(root: Path) -> DatasetError:
    with pytest.raises(DatasetError) as caught:
        scan_dataset(root)
    return caught.value


# --------------------------------------------------------------------------- what loads


def test_mixed_planar_codecs_and_0255_masks_load(synth_data) -> None:
    root = synth_data(tiles=8, size=64, compression="mixed", planar="mixed", mask_values="0255")
    info = scan_dataset(root)
    assert len(info.tiles) == 8
    assert {t.compression for t in info.tiles} == {"none", "deflate", "lzw", "zstd"}
    assert {t.planar for t in info.tiles} == {True, False}
    assert (info.mask_kind, info.num_outputs, info.activation) == ("binary", 1, "sigmoid")
    assert info.mask_values == (0, 255)
    for tile in info.tiles:
        pixels = read_image(tile)
        assert pixels.shape == (64, 64, 6) and pixels.dtype == np.uint16
        mask = read_mask(tile, kind="binary", num_outputs=1)
        assert mask.shape == (64, 64, 1) and mask.dtype == np.float32
        assert set(np.unique(mask).tolist()) <= {0.0, 1.0}


def test_planar_and_interleaved_files_read_identically(synth_data) -> None:
    flat = scan_dataset(synth_data(tiles=2, size=48, planar=False))
    planar = scan_dataset(synth_data(tiles=2, size=48, planar=True, compression="zstd"))
    for a, b in zip(flat.tiles, planar.tiles):
        assert b.planar and not a.planar
        np.testing.assert_array_equal(read_image(a), read_image(b))


def test_multipage_band_stack_is_read_bands_last(tmp_path: Path) -> None:
    pixels = image(20, 24, 5)
    (tmp_path / "images").mkdir()
    tifffile.imwrite(tmp_path / "images" / "a.tif", np.moveaxis(pixels, -1, 0))  # 5 pages
    write_pair(tmp_path, "a", None, binary_mask(20, 24))
    info = scan_dataset(tmp_path)
    assert (info.channels, info.tiles[0].planar) == (5, True)
    np.testing.assert_array_equal(read_image(info.tiles[0]), pixels)


@pytest.mark.parametrize("dtype", ["uint8", "uint16", "int16", "float32"])
def test_dtype_variants(synth_data, dtype: str) -> None:
    info = scan_dataset(synth_data(tiles=2, size=40, dtype=dtype))
    assert info.dtype == dtype
    assert read_image(info.tiles[0]).dtype == np.dtype(dtype)
    assert len(info.band_ranges) == 6 and all(lo < hi for lo, hi in info.band_ranges)


def test_single_band_tiles(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", image(c=1)[..., 0], binary_mask())
    info = scan_dataset(tmp_path)
    assert info.channels == 1
    assert read_image(info.tiles[0]).shape == (16, 16, 1)


def test_multiclass_masks(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=3, size=64, classes=4))
    assert (info.mask_kind, info.num_outputs, info.activation) == ("multiclass", 4, "softmax")
    assert info.mask_values == (0, 1, 2, 3)
    assert len(info.foreground_fraction) == 4
    assert sum(info.foreground_fraction) == pytest.approx(1.0)
    onehot = read_mask(info.tiles[0], kind="multiclass", num_outputs=4)
    assert onehot.shape == (64, 64, 4)
    np.testing.assert_array_equal(onehot.sum(axis=-1), 1.0)


def test_multilabel_masks_planar(synth_data) -> None:
    info = scan_dataset(synth_data(tiles=2, size=48, classes=3, multilabel=True, planar=True))
    assert (info.mask_kind, info.num_outputs, info.activation) == ("multilabel", 3, "sigmoid")
    mask = read_mask(info.tiles[0], kind="multilabel", num_outputs=3)
    assert mask.shape == (48, 48, 3)
    assert all(f > 0 for f in info.foreground_fraction)


def test_class_balance_and_empty_masks_exact(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", image(), binary_mask() * 255)
    write_pair(tmp_path, "b", image(), np.zeros((16, 16), np.uint8))
    info = scan_dataset(tmp_path)
    assert info.foreground_fraction == (32 / 512,)
    assert info.empty_masks == 1
    assert info.mask_values == (0, 255)
    summary = info.format()
    for text in ("tiles:        2", "16 x 16", "channels:     3", "uint16", "binary",
                 "6.25 %", "empty masks:  1 of 2", "band 1:"):
        assert text in summary


def test_label_subset_masks_join_multiclass(tmp_path: Path) -> None:
    labels = np.zeros((16, 16), np.uint8)
    labels[0, :3] = [0, 1, 2]
    write_pair(tmp_path, "a", image(), labels)
    write_pair(tmp_path, "b", image(), binary_mask())  # only {0,1}: a subset of the labels
    info = scan_dataset(tmp_path)
    assert (info.mask_kind, info.num_outputs) == ("multiclass", 3)


def test_small_tile_is_a_warning_not_an_error(tmp_path: Path) -> None:
    write_pair(tmp_path, "big", image(64, 64), binary_mask(64, 64))
    write_pair(tmp_path, "small", image(), binary_mask())
    info = scan_dataset(tmp_path, patch_size=32)
    assert len(info.warnings) == 1
    assert "small.tif" in info.warnings[0] and "padded" in info.warnings[0]


def test_geotags_round_trip_through_write_geotiff(synth_data, tmp_path: Path) -> None:
    tile = scan_dataset(synth_data(tiles=2, size=48)).tiles[1]
    assert set(tile.geotags) == {33550, 33922, 34735}
    out = tmp_path / "pred.tif"
    probabilities = RNG.random((48, 48, 2)).astype(np.float32)
    write_geotiff(out, probabilities, like=tile)
    assert [p.name for p in tmp_path.iterdir()] == ["pred.tif"]  # no temp file left behind
    with tifffile.TiffFile(out) as tif:
        page = tif.pages[0]
        for code, value in tile.geotags.items():
            assert page.tags[code].value == value
        np.testing.assert_array_equal(tif.asarray(), probabilities)


def test_write_geotiff_refuses_a_size_mismatch(synth_data, tmp_path: Path) -> None:
    tile = scan_dataset(synth_data(tiles=2, size=48)).tiles[0]
    with pytest.raises(ValueError, match="georeferencing"):
        write_geotiff(tmp_path / "x.tif", np.zeros((10, 10)), like=tile)
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- bad input


def assert_named(error: DatasetError, path: Path, *fix_words: str) -> Problem:
    matches = [p for p in error.problems if p.path == str(path)]
    assert matches, f"{path} not named in:\n{error}"
    problem = matches[0]
    assert str(problem) in str(error)
    for word in fix_words:
        assert word in problem.message, problem.message
    return problem


def test_not_a_tiff(tmp_path: Path) -> None:
    good_folder(tmp_path)
    bad = tmp_path / "images" / "t1.tif"
    bad.write_text("this is not an image\n")
    assert_named(problems_of(tmp_path), bad, "not a readable TIFF", "re-export")


def test_truncated_file(tmp_path: Path) -> None:
    good_folder(tmp_path)
    bad = tmp_path / "images" / "t2.tif"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) - 200])
    assert_named(problems_of(tmp_path), bad, "truncated", "export the tile again")


def test_channel_count_differs_from_the_majority(tmp_path: Path) -> None:
    good_folder(tmp_path)
    write_pair(tmp_path, "odd", image(c=4), binary_mask())
    problem = assert_named(problems_of(tmp_path), tmp_path / "images" / "odd.tif", "same bands")
    assert "4 bands" in problem.message and "3 of 4 tiles have 3" in problem.message


def test_image_without_mask(tmp_path: Path) -> None:
    good_folder(tmp_path)
    write_pair(tmp_path, "lonely", image(), None)
    assert_named(problems_of(tmp_path), tmp_path / "images" / "lonely.tif",
                 "has no mask", "masks/lonely.tif")


def test_mask_without_image(tmp_path: Path) -> None:
    good_folder(tmp_path)
    write_pair(tmp_path, "orphan", None, binary_mask())
    assert_named(problems_of(tmp_path), tmp_path / "masks" / "orphan.tif",
                 "has no image", "images/orphan.tif")


def test_mask_size_differs_from_image(tmp_path: Path) -> None:
    good_folder(tmp_path)
    write_pair(tmp_path, "t0", image(), binary_mask(16, 12))
    assert_named(problems_of(tmp_path), tmp_path / "masks" / "t0.tif",
                 "16 x 12", "16 x 16", "same height and width")


@pytest.mark.parametrize("values, words", [
    ([0, 7, 200], "fit no mask kind"),
    ([0, -1], "negative"),
    ([0.0, 0.5], "fractional"),
])
def test_mask_values_fit_no_kind(tmp_path: Path, values: list, words: str) -> None:
    good_folder(tmp_path)
    mask = np.zeros((16, 16), np.float32 if isinstance(values[1], float) else np.int16)
    mask[0, : len(values)] = values
    write_pair(tmp_path, "t1", image(), mask)
    assert_named(problems_of(tmp_path), tmp_path / "masks" / "t1.tif", words)


def test_mask_kinds_disagree(tmp_path: Path) -> None:
    labels = np.zeros((16, 16), np.uint8)
    labels[0, :3] = [0, 1, 2]
    write_pair(tmp_path, "a", image(), labels)
    write_pair(tmp_path, "b", image(), labels)
    write_pair(tmp_path, "c", image(), binary_mask() * 255)
    assert_named(problems_of(tmp_path), tmp_path / "masks" / "c.tif", "one kind")


def test_2d_and_multilabel_masks_disagree(tmp_path: Path) -> None:
    good_folder(tmp_path)
    write_pair(tmp_path, "ml", image(), np.zeros((16, 16, 2), np.uint8))
    assert_named(problems_of(tmp_path), tmp_path / "masks" / "ml.tif", "multi-label", "one kind")


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_nan_or_inf_pixels(tmp_path: Path, bad_value: float) -> None:
    for name in ("a", "b"):
        write_pair(tmp_path, name, image(dtype="float32"), binary_mask())
    pixels = image(dtype="float32")
    pixels[3, 4, 1] = bad_value
    write_pair(tmp_path, "c", pixels, binary_mask())
    problem = assert_named(problems_of(tmp_path), tmp_path / "images" / "c.tif", "NaN or Inf",
                           "replace them")
    assert "1 NaN or Inf pixel value" in problem.message


def test_unsupported_dtype(tmp_path: Path) -> None:
    write_pair(tmp_path, "a", image(dtype="float64"), binary_mask())
    assert_named(problems_of(tmp_path), tmp_path / "images" / "a.tif", "float64", "convert")


def test_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    assert_named(problems_of(missing), missing, "does not exist", "images/ and masks/")


def test_missing_subfolders(tmp_path: Path) -> None:
    error = problems_of(tmp_path)
    assert_named(error, tmp_path / "images", "missing", "create images/")
    assert_named(error, tmp_path / "masks", "missing", "create masks/")


def test_empty_folders(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    (tmp_path / "images" / "notes.txt").write_text("not a tile")
    error = problems_of(tmp_path)
    assert_named(error, tmp_path / "images", "no .tif or .tiff files")
    assert_named(error, tmp_path / "masks", "no .tif or .tiff files")


def test_every_problem_is_named_in_one_error(tmp_path: Path) -> None:
    good_folder(tmp_path, n=4)
    truncated = tmp_path / "images" / "t0.tif"
    truncated.write_bytes(truncated.read_bytes()[:-100])
    (tmp_path / "masks" / "t1.tif").unlink()
    (tmp_path / "images" / "t2.tif").write_bytes(b"GIF89a")
    write_pair(tmp_path, "t3", image(), binary_mask(8, 8))
    write_pair(tmp_path, "extra", None, binary_mask())
    error = problems_of(tmp_path)
    named = {Path(p.path).relative_to(tmp_path).as_posix() for p in error.problems}
    assert named == {"images/t0.tif", "images/t1.tif", "images/t2.tif", "masks/t3.tif",
                     "masks/extra.tif"}
    lines = str(error).splitlines()
    assert lines[0] == "the dataset has 5 problems:"
    assert len(lines) == 6
    assert isinstance(error, ValueError)
