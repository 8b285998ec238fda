"""Case tables for core.losses: exact hand-computed values for every loss and metric."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from core.losses import (
    LOSS_NAMES,
    CrossentropyLoss,
    CrossentropyOverlapLoss,
    DiceCoefficient,
    DiceLoss,
    IoU,
    JaccardLoss,
    make_loss,
    make_metrics,
)
from core.model import build_unet

TINY = 1e-12
LN2 = math.log(2.0)


def tile(*values: float, channels: int = 1) -> np.ndarray:
    """A (1, 2, 2, K) float32 tile from 4*K values in (pixel, channel) order."""
    return np.asarray(values, dtype=np.float32).reshape(1, 2, 2, channels)


def onehot(classes: list[int], k: int) -> np.ndarray:
    return np.eye(k, dtype=np.float32)[classes].reshape(1, 2, 2, k)


MASK = tile(1, 1, 0, 0)
HALF = tile(1, 0, 1, 0)  # I=1, sum_true=2, sum_pred=2
SOFT = tile(0.8, 0.2, 0.6, 0.0)  # I=1.0, sum_true=2, sum_pred=1.6
EMPTY = tile(0, 0, 0, 0)

# (loss name, smooth, y_true, y_pred, expected) — sigmoid outputs.
SIGMOID_CASES = [
    ("jaccard", TINY, MASK, MASK, 0.0),
    ("jaccard", TINY, MASK, EMPTY, 1.0),  # the seed's collapse: exactly 1.0000
    ("jaccard", TINY, MASK, HALF, 1 - 1 / 3),
    ("jaccard", 1.0, MASK, HALF, 1 - 2 / 4),
    ("jaccard", 1.0, MASK, SOFT, 1 - 2.0 / 3.6),
    ("jaccard", 1.0, EMPTY, EMPTY, 0.0),
    ("jaccard", 1.0, MASK, EMPTY, 1 - 1 / 3),
    ("dice", TINY, MASK, MASK, 0.0),
    ("dice", TINY, MASK, EMPTY, 1.0),
    ("dice", TINY, MASK, HALF, 1 - 2 / 4),
    ("dice", 1.0, MASK, HALF, 1 - 3 / 5),
    ("dice", 1.0, MASK, SOFT, 1 - 3.0 / 4.6),
    ("dice", 1.0, EMPTY, EMPTY, 0.0),
    ("bce", 1.0, MASK, MASK, 0.0),
    ("bce", 1.0, MASK, tile(0.5, 0.5, 0.5, 0.5), LN2),
    ("bce", 1.0, tile(1, 0, 1, 0), tile(0.8, 0.4, 0.8, 0.4), -(math.log(0.8) + math.log(0.6)) / 2),
    ("bce+jaccard", 1.0, MASK, MASK, 0.0),
    ("bce+jaccard", 1.0, MASK, tile(0.5, 0.5, 0.5, 0.5), LN2 + (1 - 2 / 4)),
    ("bce+dice", 1.0, MASK, MASK, 0.0),
    ("bce+dice", 1.0, MASK, tile(0.5, 0.5, 0.5, 0.5), LN2 + (1 - 3 / 5)),
]

# Softmax outputs, one-hot masks over K=2 classes (background included).
Y2 = onehot([0, 0, 1, 1], 2)
SOFTMAX_CASES = [
    ("jaccard", TINY, Y2, Y2, 0.0),
    ("jaccard", TINY, Y2, onehot([0, 1, 1, 0], 2), 1 - 1 / 3),  # each class: I=1, T=2, P=2
    ("dice", TINY, Y2, onehot([0, 1, 1, 0], 2), 1 - 2 / 4),
    ("jaccard", TINY, Y2, onehot([0, 0, 0, 0], 2), 1 - (2 / 4 + 0) / 2),  # class 0: I=2, U=4
    ("bce", 1.0, Y2, Y2, 0.0),
    ("bce", 1.0, Y2, np.full_like(Y2, 0.5), LN2),
    (
        "bce",
        1.0,
        onehot([0, 1, 0, 1], 2),
        tile(0.7, 0.3, 0.2, 0.8, 0.7, 0.3, 0.2, 0.8, channels=2),
        -(math.log(0.7) + math.log(0.8)) / 2,
    ),
    ("bce+jaccard", 1.0, Y2, np.full_like(Y2, 0.5), LN2 + (1 - 2 / 4)),  # per class I=1,T=2,P=2
    ("bce+dice", 1.0, Y2, np.full_like(Y2, 0.5), LN2 + (1 - 3 / 5)),
]


@pytest.mark.parametrize(("name", "smooth", "y_true", "y_pred", "expected"), SIGMOID_CASES)
def test_sigmoid_loss_table(name, smooth, y_true, y_pred, expected):
    loss = make_loss(name, activation="sigmoid", smooth=smooth)
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("name", "smooth", "y_true", "y_pred", "expected"), SOFTMAX_CASES)
def test_softmax_loss_table(name, smooth, y_true, y_pred, expected):
    loss = make_loss(name, activation="softmax", smooth=smooth)
    assert float(loss(y_true, y_pred)) == pytest.approx(expected, abs=1e-6)


def test_overlap_losses_reduce_over_the_batch_not_per_sample():
    y_true = np.zeros((2, 2, 4, 1), np.float32)
    y_true[0, 0, :2] = 1  # sample 0: 2 foreground pixels, predicted empty
    y_true[1].flat[:6] = 1  # sample 1: 6 foreground pixels, predicted exactly
    y_pred = y_true.copy()
    y_pred[0] = 0
    # Over the batch: I=6, T=8, P=6 -> J=6/8; a per-sample mean would give 0.5.
    assert float(JaccardLoss(TINY)(y_true, y_pred)) == pytest.approx(1 - 6 / 8, abs=1e-6)
    assert float(DiceLoss(TINY)(y_true, y_pred)) == pytest.approx(1 - 12 / 14, abs=1e-6)


def test_overlap_losses_average_over_channels():
    y_true = tile(1, 1, 1, 1, 0, 0, 0, 0, channels=2)  # ch0 = [1,1,0,0], ch1 = [1,1,0,0]
    y_pred = tile(1, 0, 1, 0, 0, 0, 0, 0, channels=2)  # ch0 exact, ch1 empty
    assert float(JaccardLoss(TINY)(y_true, y_pred)) == pytest.approx(0.5, abs=1e-6)


def test_losses_compute_in_float32_from_float16_predictions():
    y_pred = np.full((1, 2, 2, 1), 0.5, np.float16)
    for name in LOSS_NAMES:
        value = make_loss(name, activation="sigmoid")(MASK, y_pred)
        assert value.dtype == tf.float32, name


def test_seed_jaccard_has_no_gradient_through_a_saturated_sigmoid():
    logits = tf.Variable(np.full((1, 2, 2, 1), -100.0, np.float32))
    loss_fn = JaccardLoss(TINY)
    with tf.GradientTape() as tape:
        loss = loss_fn(MASK, tf.sigmoid(logits))
    gradient = tape.gradient(loss, logits).numpy()
    assert float(loss) == pytest.approx(1.0, abs=1e-6)
    assert np.abs(gradient).max() < 1e-20


def test_crossentropy_keeps_a_gradient_through_a_saturated_sigmoid_in_a_graph():
    # Inside a compiled train step Keras reads the logits back from the
    # sigmoid op, so bce+jaccard can pull a collapsed output back.
    logits = tf.Variable(np.full((1, 2, 2, 1), -100.0, np.float32))
    loss_fn = make_loss("bce+jaccard", activation="sigmoid", smooth=TINY)

    @tf.function
    def gradient():
        with tf.GradientTape() as tape:
            loss = loss_fn(MASK, tf.sigmoid(logits))
        return tape.gradient(loss, logits)

    assert np.abs(gradient().numpy()).max() > 0.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "iou", "activation": "sigmoid"}, r"'bce\+jaccard'"),
        ({"name": "jaccard", "activation": "relu"}, "'softmax'"),
        ({"name": "jaccard", "activation": "sigmoid", "smooth": 0.0}, "smooth"),
        ({"name": "dice", "activation": "sigmoid", "smooth": float("nan")}, "smooth"),
    ],
)
def test_make_loss_rejects_bad_options(kwargs, message):
    name = kwargs.pop("name")
    with pytest.raises(ValueError, match=message):
        make_loss(name, **kwargs)


@pytest.mark.parametrize(
    "loss",
    [
        JaccardLoss(1e-12),
        DiceLoss(0.5),
        CrossentropyLoss("softmax"),
        CrossentropyOverlapLoss("sigmoid", "dice", 2.0),
    ],
    ids=lambda loss: loss.name,
)
def test_losses_round_trip_through_keras_serialisation(loss):
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss))
    assert type(restored) is type(loss)
    assert restored.get_config() == loss.get_config()
    y_pred = tile(0.8, 0.2, 0.6, 0.1)
    assert float(restored(MASK, y_pred)) == pytest.approx(float(loss(MASK, y_pred)), abs=1e-7)


def metric_values(activation, num_outputs, batches):
    metrics = make_metrics(activation=activation, num_outputs=num_outputs)
    for y_true, y_pred in batches:
        for metric in metrics:
            metric.update_state(y_true, y_pred)
    return {metric.name: float(metric.result()) for metric in metrics}


# (activation, K, batches, iou, dice_coef, pixel_accuracy)
METRIC_CASES = [
    ("sigmoid", 1, [(MASK, MASK)], 1.0, 1.0, 1.0),
    ("sigmoid", 1, [(MASK, tile(0.9, 0.2, 0.7, 0.1))], 1 / 3, 2 / 4, 2 / 4),
    ("sigmoid", 1, [(MASK, tile(0.5, 0.5, 0.5, 0.5))], 0.0, 0.0, 2 / 4),  # 0.5 is not > 0.5
    ("sigmoid", 1, [(EMPTY, EMPTY)], 1.0, 1.0, 1.0),
    ("sigmoid", 1, [(MASK, EMPTY)], 0.0, 0.0, 2 / 4),
    # Counts accumulate over batches: I=1, T=3, P=1 (not the mean of 1.0 and 0.0).
    ("sigmoid", 1, [(tile(1, 0, 0, 0), tile(1, 0, 0, 0)), (MASK, EMPTY)], 1 / 3, 2 / 4, 6 / 8),
    # Multi-label: channel 1 is empty in mask and prediction, so only channel 0 counts.
    ("sigmoid", 2, [(tile(1, 0, 1, 0, 0, 0, 0, 0, channels=2), tile(1, 0, 0, 0, 1, 0, 0, 0, channels=2))],
     1 / 3, 2 / 4, 6 / 8),
    ("softmax", 2, [(Y2, Y2)], 1.0, 1.0, 1.0),
    # K=3: class 0 I=1,T=2,P=1; class 1 I=1,T=1,P=3; class 2 I=0,T=1,P=0.
    ("softmax", 3, [(onehot([0, 0, 1, 2], 3), onehot([0, 1, 1, 1], 3) * 0.8 + 0.1)],
     (1 / 2 + 1 / 3 + 0) / 3, (2 / 3 + 2 / 4 + 0) / 3, 2 / 4),
    # Class 2 absent from mask and prediction: averaged over classes 0 and 1 only.
    ("softmax", 3, [(onehot([0, 0, 1, 1], 3), onehot([0, 0, 1, 1], 3))], 1.0, 1.0, 1.0),
]


@pytest.mark.parametrize(("activation", "k", "batches", "iou", "dice", "accuracy"), METRIC_CASES)
def test_metric_table(activation, k, batches, iou, dice, accuracy):
    values = metric_values(activation, k, batches)
    assert list(values) == ["iou", "dice_coef", "pixel_accuracy"]
    assert values["iou"] == pytest.approx(iou, abs=1e-6)
    assert values["dice_coef"] == pytest.approx(dice, abs=1e-6)
    assert values["pixel_accuracy"] == pytest.approx(accuracy, abs=1e-6)


def test_metric_sample_weight_weights_pixels_and_reset_clears():
    metric = IoU(activation="sigmoid", num_outputs=1)
    # The missed pixel has weight 0, so what remains is a perfect prediction.
    metric.update_state(MASK, tile(1, 0, 0, 0), sample_weight=np.array([[[1, 0], [1, 1]]], np.float32))
    assert float(metric.result()) == pytest.approx(1.0)
    metric.reset_state()
    metric.update_state(MASK, EMPTY)
    assert float(metric.result()) == pytest.approx(0.0)


def test_metrics_reject_bad_options_and_round_trip():
    with pytest.raises(ValueError, match="'sigmoid'"):
        make_metrics(activation="linear", num_outputs=1)
    with pytest.raises(ValueError, match=">= 2"):
        make_metrics(activation="softmax", num_outputs=1)
    metric = DiceCoefficient(activation="softmax", num_outputs=3)
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(restored, DiceCoefficient)
    assert restored.get_config() == metric.get_config()


def test_compiled_model_trains_and_reloads_with_compile_true(tmp_path):
    keras.utils.set_random_seed(0)
    model = build_unet((16, 16, 2), 1, depth=2, base_filters=4)
    model.compile(
        optimizer="adam",
        loss=make_loss("bce+jaccard", activation="sigmoid", smooth=1e-12),
        metrics=make_metrics(activation="sigmoid", num_outputs=1),
    )
    x = np.random.default_rng(0).normal(size=(4, 16, 16, 2)).astype(np.float32)
    y = (x[..., :1] > 0).astype(np.float32)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert {"loss", "iou", "dice_coef", "pixel_accuracy"} <= set(history.history)

    path = tmp_path / "model.keras"
    model.save(path)
    reloaded = keras.saving.load_model(path, compile=True)
    assert isinstance(reloaded.loss, CrossentropyOverlapLoss)
    assert reloaded.loss.smooth == 1e-12
    np.testing.assert_allclose(
        reloaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )
