"""Segmentation losses and metrics for Tilewatch's U-Nets.

The loss choices of ``train.loss`` (``jaccard``, ``dice``, ``bce``,
``bce+jaccard``, ``bce+dice``) for sigmoid outputs (binary or multi-label
masks, ``y_true`` of shape ``(B, H, W, K)`` in {0, 1}) and for softmax outputs
(one-hot ``y_true`` of shape ``(B, H, W, K)``), and the thresholded metrics
that become history.csv columns (``iou``, ``dice_coef``, ``pixel_accuracy``).

Reduction, stated once for every overlap loss and metric here: sums run over
the batch and spatial axes ``(0, 1, 2)`` separately for each output channel
(class), giving one score per channel; the result is the mean over channels.
This is the seed's ``axis=[0, -1, -2]`` intent for ``(B, H, W, K)`` tensors. It
is also what makes the seed's failure possible: with ``smooth=1e-12`` an
all-zero prediction on a batch that holds foreground gives a Jaccard index of
~1e-12 / sum_true, a loss of exactly 1.0000 and, through a saturated sigmoid,
no gradient at all.

Every loss casts ``y_true`` and ``y_pred`` to float32 before computing, so it
is safe under mixed precision. The loss and metric classes are registered with
Keras (package ``"tilewatch"``): a compiled model saved to ``.keras`` reloads
with ``compile=True`` once this module has been imported.

Losses that reduce over the batch return one scalar per batch; a
``sample_weight`` passed to them scales that scalar by the weights' mean
rather than weighting pixels.

This module must never import Qt (``core`` is headless).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

import keras
from keras import ops

__all__ = [
    "ACTIVATIONS",
    "LOSS_NAMES",
    "CrossentropyLoss",
    "CrossentropyOverlapLoss",
    "DiceCoefficient",
    "DiceLoss",
    "IoU",
    "JaccardLoss",
    "dice_coefficient",
    "jaccard_index",
    "make_loss",
    "make_metrics",
]

LOSS_NAMES: Final[tuple[str, ...]] = ("jaccard", "dice", "bce", "bce+jaccard", "bce+dice")
ACTIVATIONS: Final[tuple[str, ...]] = ("sigmoid", "softmax")
_SPATIAL_AND_BATCH: Final = (0, 1, 2)


def _check_activation(activation: str) -> None:
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {ACTIVATIONS}, got {activation!r}")


def _check_smooth(smooth: float) -> None:
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not (
        math.isfinite(smooth) and smooth > 0
    ):
        raise ValueError(
            f"smooth must be a finite number > 0 (the seed used 1e-12; 1.0 is the default), "
            f"got {smooth!r}; with 0 an empty mask and an empty prediction give 0/0"
        )


def _overlap_sums(y_true: Any, y_pred: Any) -> tuple[Any, Any, Any]:
    """Per-channel intersection, sum of y_true and sum of y_pred, in float32.

    Both inputs are ``(B, H, W, K)``; each sum runs over axes ``(0, 1, 2)``
    and has shape ``(K,)``.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    intersection = ops.sum(y_true * y_pred, axis=_SPATIAL_AND_BATCH)
    sum_true = ops.sum(y_true, axis=_SPATIAL_AND_BATCH)
    sum_pred = ops.sum(y_pred, axis=_SPATIAL_AND_BATCH)
    return intersection, sum_true, sum_pred


def jaccard_index(y_true: Any, y_pred: Any, *, smooth: float = 1.0) -> Any:
    """Soft Jaccard index of ``(B, H, W, K)`` tensors, a float32 scalar.

    For each channel k, sums over the batch and spatial axes ``(0, 1, 2)``:
    ``J_k = (I_k + smooth) / (sum_true_k + sum_pred_k - I_k + smooth)`` with
    ``I_k = sum(y_true * y_pred)``; returns ``mean_k(J_k)``.
    """
    intersection, sum_true, sum_pred = _overlap_sums(y_true, y_pred)
    jaccard = (intersection + smooth) / (sum_true + sum_pred - intersection + smooth)
    return ops.mean(jaccard)


def dice_coefficient(y_true: Any, y_pred: Any, *, smooth: float = 1.0) -> Any:
    """Soft Dice coefficient of ``(B, H, W, K)`` tensors, a float32 scalar.

    For each channel k, sums over the batch and spatial axes ``(0, 1, 2)``:
    ``D_k = (2 * I_k + smooth) / (sum_true_k + sum_pred_k + smooth)``;
    returns ``mean_k(D_k)``.
    """
    intersection, sum_true, sum_pred = _overlap_sums(y_true, y_pred)
    dice = (2.0 * intersection + smooth) / (sum_true + sum_pred + smooth)
    return ops.mean(dice)


def _crossentropy(y_true: Any, y_pred: Any, activation: str) -> Any:
    """Mean pixel crossentropy from probabilities, a float32 scalar.

    Sigmoid: Keras' binary crossentropy (probabilities clipped to
    ``[eps, 1 - eps]``), mean over all axes ``(0, 1, 2, 3)``. Softmax: Keras'
    categorical crossentropy over the class axis (probabilities renormalised
    and clipped), mean over axes ``(0, 1, 2)``. Under TensorFlow graph
    execution Keras reads the logits back from a sigmoid/softmax op feeding
    ``y_pred`` directly, exactly as ``keras.losses`` does.
    """
    y_true = ops.cast(y_true, "float32")
    y_pred = ops.cast(y_pred, "float32")
    if activation == "sigmoid":
        per_element = ops.binary_crossentropy(y_true, y_pred, from_logits=False)
    else:
        per_element = ops.categorical_crossentropy(y_true, y_pred, from_logits=False, axis=-1)
    return ops.mean(per_element)


_OVERLAP_INDEX: Final[dict[str, Callable[..., Any]]] = {
    "jaccard": jaccard_index,
    "dice": dice_coefficient,
}


class _OverlapLoss(keras.losses.Loss):
    """``1 - overlap index``, the index chosen by the subclass's ``overlap``."""

    overlap: str

    def __init__(self, smooth: float, *, name: str, **kwargs: Any) -> None:
        _check_smooth(smooth)
        super().__init__(name=name, **kwargs)
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return 1.0 - _OVERLAP_INDEX[self.overlap](y_true, y_pred, smooth=self.smooth)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "smooth": self.smooth}


@keras.saving.register_keras_serializable(package="tilewatch")
class JaccardLoss(_OverlapLoss):
    """Soft Jaccard loss ``1 - mean_k(J_k)``; see :func:`jaccard_index`.

    Reduces over the batch and spatial axes ``(0, 1, 2)`` per output channel,
    then takes the mean over channels; returns one float32 scalar per batch.
    The same formula serves sigmoid and softmax outputs (for softmax, every
    class, background included, is one channel).
    """

    overlap = "jaccard"

    def __init__(self, smooth: float = 1.0, *, name: str = "jaccard", **kwargs: Any) -> None:
        super().__init__(smooth, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="tilewatch")
class DiceLoss(_OverlapLoss):
    """Soft Dice loss ``1 - mean_k(D_k)``; see :func:`dice_coefficient`.

    Reduces over the batch and spatial axes ``(0, 1, 2)`` per output channel,
    then takes the mean over channels; returns one float32 scalar per batch.
    """

    overlap = "dice"

    def __init__(self, smooth: float = 1.0, *, name: str = "dice", **kwargs: Any) -> None:
        super().__init__(smooth, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="tilewatch")
class CrossentropyLoss(keras.losses.Loss):
    """Pixel crossentropy from probabilities: binary (sigmoid) or categorical (softmax).

    Sigmoid: mean of the per-element binary crossentropy over all axes
    ``(0, 1, 2, 3)``. Softmax: categorical crossentropy summed over the class
    axis, then the mean over ``(0, 1, 2)``. Returns one float32 scalar per batch.
    """

    def __init__(
        self, activation: str = "sigmoid", *, name: str = "bce", **kwargs: Any
    ) -> None:
        _check_activation(activation)
        super().__init__(name=name, **kwargs)
        self.activation = activation

    def call(self, y_true: Any, y_pred: Any) -> Any:
        return _crossentropy(y_true, y_pred, self.activation)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "activation": self.activation}


@keras.saving.register_keras_serializable(package="tilewatch")
class CrossentropyOverlapLoss(keras.losses.Loss):
    """Crossentropy plus an overlap loss, unweighted: ``CE + (1 - J)`` or ``CE + (1 - D)``.

    Each term reduces as in :class:`CrossentropyLoss` and :class:`JaccardLoss`
    / :class:`DiceLoss` (batch and spatial axes per channel, then the channel
    mean); returns one float32 scalar per batch. The crossentropy term keeps a
    gradient where a saturated sigmoid leaves the overlap term flat.
    """

    def __init__(
        self,
        activation: str = "sigmoid",
        overlap: str = "jaccard",
        smooth: float = 1.0,
        *,
        name: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_activation(activation)
        if overlap not in _OVERLAP_INDEX:
            raise ValueError(f"overlap must be one of {tuple(_OVERLAP_INDEX)}, got {overlap!r}")
        _check_smooth(smooth)
        super().__init__(name=name or f"bce_{overlap}", **kwargs)
        self.activation = activation
        self.overlap = overlap
        self.smooth = float(smooth)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        overlap_loss = 1.0 - _OVERLAP_INDEX[self.overlap](y_true, y_pred, smooth=self.smooth)
        return _crossentropy(y_true, y_pred, self.activation) + overlap_loss

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "activation": self.activation,
            "overlap": self.overlap,
            "smooth": self.smooth,
        }


def make_loss(name: str, *, activation: str, smooth: float = 1.0) -> keras.losses.Loss:
    """Return the loss named by ``train.loss`` for a model with this output activation.

    Args:
        name: one of ``LOSS_NAMES``: ``"jaccard"``, ``"dice"``, ``"bce"``,
            ``"bce+jaccard"``, ``"bce+dice"``. ``"bce"`` means categorical
            crossentropy for softmax outputs.
        activation: the model's output activation, ``"sigmoid"`` (binary or
            multi-label masks) or ``"softmax"`` (one-hot masks).
        smooth: the overlap losses' smoothing term (``train.jaccard_smooth``),
            > 0; ignored by ``"bce"``.

    Returns:
        A serialisable ``keras.losses.Loss`` computing in float32; each
        reduces to one scalar per batch (axes documented on its class).

    Raises:
        ValueError: an unknown name or activation (the message lists the valid
            ones), or ``smooth <= 0``.
    """
    _check_activation(activation)
    if name not in LOSS_NAMES:
        raise ValueError(f"loss must be one of {LOSS_NAMES}, got {name!r}")
    _check_smooth(smooth)
    if name == "jaccard":
        return JaccardLoss(smooth)
    if name == "dice":
        return DiceLoss(smooth)
    if name == "bce":
        return CrossentropyLoss(activation)
    return CrossentropyOverlapLoss(activation, name.split("+", 1)[1], smooth)


class _ThresholdedOverlap(keras.metrics.Metric):
    """Accumulates per-channel counts of thresholded masks over an epoch.

    Sigmoid: a pixel is foreground in channel k when ``y_pred > 0.5`` (and in
    the mask when ``y_true > 0.5``). Softmax: the predicted (and true) class is
    the argmax over channels, one-hot encoded. Counts are summed over the
    batch and spatial axes ``(0, 1, 2)`` and across every batch since the last
    reset; ``result()`` averages the per-channel score over the channels
    *present* (foreground in the mask or the prediction; for softmax every
    class, background included, counts). When no channel is present (an empty
    mask predicted empty) the result is 1.0.
    """

    def __init__(
        self,
        *,
        activation: str = "sigmoid",
        num_outputs: int = 1,
        name: str | None = None,
        dtype: Any = None,
    ) -> None:
        _check_activation(activation)
        if isinstance(num_outputs, bool) or not isinstance(num_outputs, int) or num_outputs < 1:
            raise ValueError(f"num_outputs must be an integer >= 1, got {num_outputs!r}")
        if activation == "softmax" and num_outputs < 2:
            raise ValueError(f"softmax needs num_outputs >= 2, got {num_outputs}")
        super().__init__(name=name, dtype=dtype)
        self.activation = activation
        self.num_outputs = num_outputs
        self.intersection = self.add_variable((num_outputs,), "zeros", "float32", name="intersection")
        self.sum_true = self.add_variable((num_outputs,), "zeros", "float32", name="sum_true")
        self.sum_pred = self.add_variable((num_outputs,), "zeros", "float32", name="sum_pred")

    def _binarise(self, y_true: Any, y_pred: Any) -> tuple[Any, Any]:
        y_true = ops.cast(y_true, "float32")
        y_pred = ops.cast(y_pred, "float32")
        if self.activation == "sigmoid":
            return ops.cast(y_true > 0.5, "float32"), ops.cast(y_pred > 0.5, "float32")
        return (
            ops.one_hot(ops.argmax(y_true, axis=-1), self.num_outputs, dtype="float32"),
            ops.one_hot(ops.argmax(y_pred, axis=-1), self.num_outputs, dtype="float32"),
        )

    def update_state(self, y_true: Any, y_pred: Any, sample_weight: Any = None) -> None:
        """Add a batch of ``(B, H, W, K)`` masks and probabilities.

        ``sample_weight`` of shape ``(B,)`` or ``(B, H, W)`` weights samples or
        pixels in the counts.
        """
        y_true, y_pred = self._binarise(y_true, y_pred)
        weight: Any = 1.0
        if sample_weight is not None:
            weight = ops.cast(sample_weight, "float32")
            while len(weight.shape) < 4:
                weight = ops.expand_dims(weight, -1)
        self.intersection.assign_add(ops.sum(y_true * y_pred * weight, axis=_SPATIAL_AND_BATCH))
        self.sum_true.assign_add(ops.sum(y_true * weight, axis=_SPATIAL_AND_BATCH))
        self.sum_pred.assign_add(ops.sum(y_pred * weight, axis=_SPATIAL_AND_BATCH))

    def _scores(self) -> Any:
        raise NotImplementedError

    def result(self) -> Any:
        present = ops.cast(self.sum_true + self.sum_pred > 0, "float32")
        n_present = ops.sum(present)
        mean_present = ops.sum(self._scores() * present) / ops.maximum(n_present, 1.0)
        return ops.where(n_present > 0, mean_present, ops.ones_like(mean_present))

    def get_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "activation": self.activation,
            "num_outputs": self.num_outputs,
        }


@keras.saving.register_keras_serializable(package="tilewatch")
class IoU(_ThresholdedOverlap):
    """Thresholded intersection over union, ``I_k / (T_k + P_k - I_k)``, averaged
    over the channels present (see the base class for thresholds and axes)."""

    def __init__(
        self, *, activation: str = "sigmoid", num_outputs: int = 1, name: str = "iou", dtype: Any = None
    ) -> None:
        super().__init__(activation=activation, num_outputs=num_outputs, name=name, dtype=dtype)

    def _scores(self) -> Any:
        union = self.sum_true + self.sum_pred - self.intersection
        return self.intersection / ops.maximum(union, 1e-12)


@keras.saving.register_keras_serializable(package="tilewatch")
class DiceCoefficient(_ThresholdedOverlap):
    """Thresholded Dice, ``2 I_k / (T_k + P_k)``, averaged over the channels
    present (see the base class for thresholds and axes)."""

    def __init__(
        self,
        *,
        activation: str = "sigmoid",
        num_outputs: int = 1,
        name: str = "dice_coef",
        dtype: Any = None,
    ) -> None:
        super().__init__(activation=activation, num_outputs=num_outputs, name=name, dtype=dtype)

    def _scores(self) -> Any:
        return 2.0 * self.intersection / ops.maximum(self.sum_true + self.sum_pred, 1e-12)


def make_metrics(*, activation: str, num_outputs: int) -> list[keras.metrics.Metric]:
    """Return fresh metrics named ``iou``, ``dice_coef`` and ``pixel_accuracy``.

    ``iou`` and ``dice_coef`` are :class:`IoU` and :class:`DiceCoefficient`:
    thresholded at 0.5 (sigmoid) or by argmax (softmax), counts accumulated
    over the epoch, averaged over the channels present. ``pixel_accuracy`` is
    Keras' ``BinaryAccuracy`` (threshold 0.5, the fraction of correct
    pixel-channel entries) for sigmoid or ``CategoricalAccuracy`` (the
    fraction of pixels whose argmax class is right) for softmax.

    Raises:
        ValueError: a bad activation (lists the valid ones), ``num_outputs < 1``,
            or softmax with ``num_outputs < 2``.
    """
    _check_activation(activation)
    accuracy: keras.metrics.Metric
    if activation == "sigmoid":
        accuracy = keras.metrics.BinaryAccuracy(name="pixel_accuracy", threshold=0.5)
    else:
        accuracy = keras.metrics.CategoricalAccuracy(name="pixel_accuracy")
    return [
        IoU(activation=activation, num_outputs=num_outputs),
        DiceCoefficient(activation=activation, num_outputs=num_outputs),
        accuracy,
    ]
