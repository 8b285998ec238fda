"""The U-Net builder and full-tile prediction.

This module builds the segmentation network Tilewatch trains: a plain
functional ``keras.Model`` made only of built-in Keras layers, so that a saved
``.keras`` file opens with ``keras.saving.load_model(path, compile=False)`` in
a script that has never heard of Tilewatch. It also predicts whole tiles of
any size (650x650 is the reference case) by reflect-padding them to a multiple
of ``2**depth`` and cropping the result back.

Layer names are part of the contract (the trainer and the monitor look layers
up by name), so they are derived from the stage they belong to:

* ``image``: the input;
* ``encoder_stage{i}_conv{j}``, ``_bn{j}``, ``_relu{j}`` (j = 1, 2) and
  ``encoder_stage{i}_pool`` for i = 1 (full resolution) .. depth;
* ``bottleneck_conv{j}``, ``bottleneck_bn{j}``, ``bottleneck_relu{j}`` and,
  when dropout > 0, ``bottleneck_dropout``;
* ``decoder_stage{i}_up`` (2x2 stride-2 transposed convolution),
  ``decoder_stage{i}_concat`` (with the skip from ``encoder_stage{i}``), then
  ``decoder_stage{i}_conv{j}``, ``_bn{j}``, ``_relu{j}``; decoder stages run
  from i = depth (coarsest) down to 1 (full resolution);
* ``logits``: the final 1x1 convolution, pre-activation, in the dtype policy's
  compute dtype (float16 under ``mixed_float16``);
* ``output``: the sigmoid or softmax ``Activation``, always float32.

This module must never import Qt (``core`` is headless) and never touches
global Keras state (dtype policy, seeds): callers own those.
"""

from __future__ import annotations

import re
from typing import Final

import keras
import numpy as np

__all__ = ["OUTPUT_ACTIVATIONS", "build_unet", "predict_full", "unet_depth"]

OUTPUT_ACTIVATIONS: Final[tuple[str, ...]] = ("sigmoid", "softmax")

_POOL_NAME: Final = re.compile(r"^encoder_stage(\d+)_pool$")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _validate(
    input_shape: tuple[int | None, int | None, int],
    num_outputs: int,
    depth: int,
    base_filters: int,
    dropout: float,
    output_activation: str,
) -> None:
    if output_activation not in OUTPUT_ACTIVATIONS:
        raise ValueError(
            f"output_activation must be one of {OUTPUT_ACTIVATIONS}, got {output_activation!r}"
        )
    if not _is_int(depth) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if not _is_int(base_filters) or base_filters < 1:
        raise ValueError(f"base_filters must be an integer >= 1, got {base_filters!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be a number with 0 <= dropout < 1, got {dropout!r}")
    if not _is_int(num_outputs) or num_outputs < 1:
        raise ValueError(f"num_outputs must be an integer >= 1, got {num_outputs!r}")
    if output_activation == "softmax" and num_outputs < 2:
        raise ValueError(
            "output_activation='softmax' needs num_outputs >= 2 (one output per class, "
            f"background included); got num_outputs={num_outputs}. "
            "Use output_activation='sigmoid' for a single binary output."
        )
    if not isinstance(input_shape, (tuple, list)) or len(input_shape) != 3:
        raise ValueError(
            f"input_shape must be (height, width, channels), got {input_shape!r}"
        )
    height, width, channels = input_shape
    if not _is_int(channels) or channels < 1:
        raise ValueError(f"input_shape channels must be an integer >= 1, got {channels!r}")
    multiple = 2**depth
    for axis, size in (("height", height), ("width", width)):
        if size is None:
            continue
        if not _is_int(size) or size < 1 or size % multiple:
            raise ValueError(
                f"input_shape {axis} must be None (any size) or a positive multiple of "
                f"2**depth = {multiple}, got {size!r}; use None and predict_full() for "
                "tiles of other sizes"
            )


def _conv_block(
    x: keras.KerasTensor, filters: int, prefix: str, *, batch_norm: bool
) -> keras.KerasTensor:
    """Two (3x3 conv [+ batch norm] + ReLU) layers named ``{prefix}_conv1`` etc."""
    for j in (1, 2):
        x = keras.layers.Conv2D(
            filters,
            3,
            padding="same",
            use_bias=not batch_norm,  # batch norm's beta makes a conv bias redundant
            kernel_initializer="he_normal",
            name=f"{prefix}_conv{j}",
        )(x)
        if batch_norm:
            x = keras.layers.BatchNormalization(name=f"{prefix}_bn{j}")(x)
        x = keras.layers.Activation("relu", name=f"{prefix}_relu{j}")(x)
    return x


def build_unet(
    input_shape: tuple[int | None, int | None, int],
    num_outputs: int,
    *,
    depth: int = 4,
    base_filters: int = 32,
    batch_norm: bool = True,
    dropout: float = 0.0,
    output_activation: str = "sigmoid",
    name: str = "unet",
) -> keras.Model:
    """Build a standard U-Net as a plain functional ``keras.Model``.

    Each of the ``depth`` encoder stages is two 3x3 convolutions (each followed
    by batch normalisation when ``batch_norm``, then ReLU) and a 2x2 max-pool;
    stage i has ``base_filters * 2**(i-1)`` filters. The bottleneck has
    ``base_filters * 2**depth`` filters and, when ``dropout > 0``, a dropout
    layer after its convolutions. Each decoder stage upsamples with a 2x2
    stride-2 transposed convolution, concatenates the encoder skip of the same
    resolution and applies two more convolutions. A 1x1 convolution
    (``"logits"``) and a float32 activation (``"output"``) finish it.

    Args:
        input_shape: ``(height, width, channels)``. Height and width may be
            ``None`` (any size that is a multiple of ``2**depth``; use
            :func:`predict_full` for other sizes).
        num_outputs: output channels: 1 for a binary mask, K for K
            multi-label sigmoid outputs or K softmax classes (K >= 2).
        depth: number of pooling stages (>= 1).
        base_filters: filters of the first stage (>= 1); doubles per stage.
        batch_norm: add batch normalisation after every 3x3 convolution.
        dropout: dropout rate in the bottleneck, ``0 <= dropout < 1``.
        output_activation: ``"sigmoid"`` or ``"softmax"``.
        name: the model's name.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(B, H, W, C)`` images to
        ``(B, H, W, num_outputs)`` float32 probabilities. The model is built
        under the current global dtype policy.

    Raises:
        ValueError: a bad option; the message lists the valid choices or range.
    """
    _validate(input_shape, num_outputs, depth, base_filters, dropout, output_activation)
    height, width, channels = input_shape

    inputs = keras.Input(shape=(height, width, int(channels)), name="image")
    x = inputs
    skips: list[keras.KerasTensor] = []
    for stage in range(1, depth + 1):
        x = _conv_block(
            x, base_filters * 2 ** (stage - 1), f"encoder_stage{stage}", batch_norm=batch_norm
        )
        skips.append(x)
        x = keras.layers.MaxPooling2D(2, name=f"encoder_stage{stage}_pool")(x)

    x = _conv_block(x, base_filters * 2**depth, "bottleneck", batch_norm=batch_norm)
    if dropout > 0:
        x = keras.layers.Dropout(float(dropout), name="bottleneck_dropout")(x)

    for stage in range(depth, 0, -1):
        filters = base_filters * 2 ** (stage - 1)
        x = keras.layers.Conv2DTranspose(
            filters, 2, strides=2, padding="same", name=f"decoder_stage{stage}_up"
        )(x)
        x = keras.layers.Concatenate(name=f"decoder_stage{stage}_concat")([x, skips[stage - 1]])
        x = _conv_block(x, filters, f"decoder_stage{stage}", batch_norm=batch_norm)

    logits = keras.layers.Conv2D(num_outputs, 1, name="logits")(x)
    outputs = keras.layers.Activation(output_activation, dtype="float32", name="output")(logits)
    return keras.Model(inputs, outputs, name=name)


def unet_depth(model: keras.Model) -> int:
    """Return the depth (number of pooling stages) of a :func:`build_unet` model.

    The depth is read from the layer names (``encoder_stage{i}_pool``), so it
    works on a model reloaded from a ``.keras`` file.

    Raises:
        ValueError: the model has no ``encoder_stage{i}_pool`` layers, i.e. it
            was not built by :func:`build_unet`.
    """
    stages = [int(m.group(1)) for layer in model.layers if (m := _POOL_NAME.match(layer.name))]
    if not stages:
        raise ValueError(
            f"model {model.name!r} has no 'encoder_stage<i>_pool' layers; "
            "it was not built by build_unet(), so pass depth= explicitly"
        )
    return max(stages)


def predict_full(
    model: keras.Model,
    image: np.ndarray,
    *,
    batch_size: int = 1,
    depth: int | None = None,
) -> np.ndarray:
    """Predict whole tiles of any size and return probabilities of exactly their size.

    Each tile is reflect-padded at the bottom and right to the next multiple
    of ``2**depth``, predicted, and cropped back to ``H x W``. A tile is
    predicted whole (no windows): a 650x650 tile is padded to 656x656 for
    depth 4.

    Args:
        model: a :func:`build_unet` model (input height/width ``None``).
        image: one tile ``(H, W, C)`` or a stack ``(N, H, W, C)``; converted to
            float32. Normalise it as the training data was.
        batch_size: tiles per forward pass (>= 1).
        depth: the model's depth; read from its layer names when ``None``.

    Returns:
        float32 probabilities ``(H, W, K)`` for one tile or ``(N, H, W, K)``
        for a stack, K being the model's outputs.

    Raises:
        ValueError: ``image`` is not 3-D or 4-D, ``batch_size < 1``, ``depth < 1``,
            or (``depth=None``) the depth cannot be read from the model.
    """
    if not _is_int(batch_size) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if depth is None:
        depth = unet_depth(model)
    elif not _is_int(depth) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    array = np.asarray(image, dtype=np.float32)
    if array.ndim not in (3, 4):
        raise ValueError(
            f"image must be (H, W, C) or (N, H, W, C), got an array of shape {array.shape}"
        )
    single = array.ndim == 3
    if single:
        array = array[np.newaxis]
    _, height, width, _ = array.shape
    multiple = 2**depth
    pad_h = -height % multiple
    pad_w = -width % multiple
    # numpy's reflect mode repeats the reflection when the pad exceeds the
    # tile; a 1-pixel axis has nothing to reflect, so it is repeated instead.
    for axis, size, pad in ((1, height, pad_h), (2, width, pad_w)):
        if pad:
            widths = [(0, 0)] * 4
            widths[axis] = (0, pad)
            array = np.pad(array, widths, mode="reflect" if size > 1 else "edge")

    chunks = [
        np.asarray(model.predict_on_batch(array[start : start + batch_size]), dtype=np.float32)
        for start in range(0, array.shape[0], batch_size)
    ]
    probabilities = np.concatenate(chunks, axis=0)[:, :height, :width, :]
    probabilities = np.ascontiguousarray(probabilities)
    return probabilities[0] if single else probabilities
