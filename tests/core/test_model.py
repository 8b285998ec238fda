"""Tests for core.model: layer names, dtypes, bad options, full-tile prediction, plain-Keras reload."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from core.model import build_unet, predict_full, unet_depth


@pytest.fixture(scope="module")
def tiny() -> keras.Model:
    keras.utils.set_random_seed(0)
    return build_unet((None, None, 3), 2, depth=2, base_filters=4)


def expected_params(channels, outputs, depth, filters, batch_norm):
    """Count a U-Net's parameters by hand (BN: 4 per channel; no conv bias with BN)."""

    def conv3(cin, cout):
        return 9 * cin * cout + (4 * cout if batch_norm else cout)

    total, cin = 0, channels
    for stage in range(depth):
        cout = filters * 2**stage
        total += conv3(cin, cout) + conv3(cout, cout)
        cin = cout
    bottom = filters * 2**depth
    total += conv3(cin, bottom) + conv3(bottom, bottom)
    cin = bottom
    for stage in reversed(range(depth)):
        cout = filters * 2**stage
        total += 4 * cin * cout + cout  # 2x2 transposed conv with bias
        total += conv3(2 * cout, cout) + conv3(cout, cout)
        cin = cout
    return total + cin * outputs + outputs


def test_layer_names_follow_the_stages(tiny):
    names = [layer.name for layer in tiny.layers]
    assert names[0] == "image"
    assert names[-2:] == ["logits", "output"]
    for stage in (1, 2):
        for part in ("conv1", "bn1", "relu1", "conv2", "bn2", "relu2", "pool"):
            assert f"encoder_stage{stage}_{part}" in names
        for part in ("up", "concat", "conv1", "bn1", "relu1", "conv2", "bn2", "relu2"):
            assert f"decoder_stage{stage}_{part}" in names
    assert {"bottleneck_conv1", "bottleneck_bn2", "bottleneck_relu2"} <= set(names)
    assert "bottleneck_dropout" not in names
    # Decoder stages run coarsest first; stage i joins the skip of encoder stage i.
    assert names.index("decoder_stage2_up") < names.index("decoder_stage1_up")
    concat = tiny.get_layer("decoder_stage1_concat")
    assert tiny.get_layer("encoder_stage1_relu2").output in concat.input
    assert unet_depth(tiny) == 2


def test_options_shape_the_network():
    model = build_unet((64, 64, 6), 3, depth=3, base_filters=8, batch_norm=False, dropout=0.5,
                       output_activation="softmax", name="mine")
    names = {layer.name for layer in model.layers}
    assert model.name == "mine"
    assert not any("_bn" in name for name in names)
    assert model.get_layer("bottleneck_dropout").rate == 0.5
    assert model.get_layer("encoder_stage3_conv1").filters == 32
    assert model.get_layer("bottleneck_conv1").filters == 64
    assert model.get_layer("output").get_config()["activation"] == "softmax"
    assert model.output.shape == (None, 64, 64, 3)
    assert unet_depth(model) == 3
    probabilities = model.predict_on_batch(np.zeros((1, 64, 64, 6), np.float32))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)


@pytest.mark.parametrize(
    ("args", "kwargs"),
    [
        (((None, None, 3), 2), {"depth": 2, "base_filters": 4}),
        (((None, None, 6), 1), {"depth": 3, "base_filters": 8, "batch_norm": False}),
        (((64, 64, 1), 4), {"depth": 1, "base_filters": 5}),
    ],
)
def test_parameter_count_matches_hand_count(args, kwargs):
    model = build_unet(*args, **kwargs)
    channels, outputs = args[0][2], args[1]
    assert model.count_params() == expected_params(
        channels, outputs, kwargs["depth"], kwargs["base_filters"], kwargs.get("batch_norm", True)
    )


def test_mixed_precision_keeps_the_output_float32():
    try:
        keras.mixed_precision.set_global_policy("mixed_float16")
        model = build_unet((None, None, 3), 1, depth=2, base_filters=4)
        assert model.get_layer("logits").output.dtype == "float16"
        assert model.get_layer("output").output.dtype == "float32"
        both = keras.Model(model.input, [model.get_layer("logits").output, model.output])
        logits, probabilities = both.predict_on_batch(np.zeros((1, 32, 32, 3), np.float32))
        assert logits.dtype == np.float16 and probabilities.dtype == np.float32
        assert predict_full(model, np.zeros((37, 53, 3), np.float32)).dtype == np.float32
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert build_unet((None, None, 3), 1, depth=1, base_filters=2).get_layer("logits").dtype == "float32"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"output_activation": "relu"}, r"\('sigmoid', 'softmax'\)"),
        ({"depth": 0}, "depth must be an integer >= 1"),
        ({"depth": 2.0}, "depth must be an integer >= 1"),
        ({"base_filters": 0}, "base_filters must be an integer >= 1"),
        ({"dropout": 1.0}, "0 <= dropout < 1"),
        ({"dropout": -0.1}, "0 <= dropout < 1"),
        ({"num_outputs": 0}, "num_outputs must be an integer >= 1"),
        ({"num_outputs": 1, "output_activation": "softmax"}, "num_outputs >= 2"),
        ({"input_shape": (None, None, 0)}, "channels must be an integer >= 1"),
        ({"input_shape": (None, 3)}, r"\(height, width, channels\)"),
        ({"input_shape": (65, 64, 3)}, "multiple of 2\\*\\*depth = 4"),
    ],
)
def test_bad_options_raise_value_error_naming_the_valid_ones(kwargs, message):
    args = {"input_shape": (None, None, 3), "num_outputs": 1, "depth": 2, "base_filters": 4} | kwargs
    with pytest.raises(ValueError, match=message):
        build_unet(args.pop("input_shape"), args.pop("num_outputs"), **args)


@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("size", [(37, 53), (650, 650)])
def test_predict_full_returns_exactly_the_tile_size(depth, size):
    model = build_unet((None, None, 2), 1, depth=depth, base_filters=2)
    tile = np.random.default_rng(0).normal(size=(*size, 2)).astype(np.float32)
    probabilities = predict_full(model, tile)
    assert probabilities.shape == (*size, 1)
    assert probabilities.dtype == np.float32
    assert np.all((probabilities >= 0) & (probabilities <= 1))


def test_predict_full_stacks_batches_and_matches_a_direct_prediction(tiny):
    rng = np.random.default_rng(1)
    stack = rng.normal(size=(3, 32, 32, 3)).astype(np.float32)
    direct = np.asarray(tiny.predict_on_batch(stack))
    np.testing.assert_allclose(predict_full(tiny, stack, batch_size=2), direct, atol=1e-6)
    odd = rng.normal(size=(3, 30, 29, 3))  # float64 on purpose: converted to float32
    full = predict_full(tiny, odd, batch_size=2, depth=2)
    assert full.shape == (3, 30, 29, 2)
    np.testing.assert_allclose(full[1], predict_full(tiny, odd[1]), atol=1e-6)
    assert predict_full(tiny, np.zeros((1, 1, 3))).shape == (1, 1, 2)


def test_predict_full_and_unet_depth_reject_bad_input(tiny):
    with pytest.raises(ValueError, match=r"\(H, W, C\) or \(N, H, W, C\)"):
        predict_full(tiny, np.zeros((8, 8)))
    with pytest.raises(ValueError, match="batch_size"):
        predict_full(tiny, np.zeros((8, 8, 3)), batch_size=0)
    with pytest.raises(ValueError, match="depth"):
        predict_full(tiny, np.zeros((8, 8, 3)), depth=0)
    plain = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(1, 1)])
    with pytest.raises(ValueError, match="not built by build_unet"):
        unet_depth(plain)


def test_saved_model_reloads_in_plain_keras_without_tilewatch(tiny, tmp_path):
    path = tmp_path / "unet.keras"
    tiny.save(path)
    tile = np.random.default_rng(2).normal(size=(1, 24, 40, 3)).astype(np.float32)
    np.save(tmp_path / "tile.npy", tile)
    script = textwrap.dedent(
        """
        import sys
        import keras, numpy as np
        model = keras.saving.load_model("unet.keras", compile=False)
        np.save("out.npy", np.asarray(model.predict_on_batch(np.load("tile.npy"))))
        assert not any(name == "core" or name.startswith("core.") for name in sys.modules)
        """
    )
    subprocess.run([sys.executable, "-c", script], cwd=tmp_path, check=True, timeout=120,
                   capture_output=True)
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), tiny.predict_on_batch(tile), atol=1e-6)
