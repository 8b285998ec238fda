"""In-step signals: what the outputs and the update looked like at every step.

:class:`SignalModel` wraps a U-Net for training. Its ``train_step`` is Keras'
own (forward, loss, scaled gradients, ``apply_gradients``, metrics) plus a
handful of reductions over tensors the step already holds — the logits, the
probabilities, the masks, the gradients and the weight update — so the
signals cost no extra forward pass. Each step writes one row into a device-side
ring buffer; :meth:`SignalModel.drain` reads every new row in one transfer, so
nothing forces a host sync per step.

The wrapped U-Net stays a plain functional ``keras.Model``: checkpoints save
it, not this wrapper. This module never imports Qt.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
import tensorflow as tf
from keras.src.losses import loss as _loss_module

__all__ = ["SignalModel", "signal_names", "PINNED"]

#: A probability this close to 0 or 1 counts as pinned.
PINNED = 1e-3

_BASE = (
    "loss",
    "lr",
    "grad_norm",
    "update_ratio",
    "pos_frac",
    "mask_frac",
    "pinned_frac",
    "pinned_low",
    "pinned_high",
    "dominant_frac",
    "dominant_class",
    "logit_mean",
    "logit_spread",
    "logit_absmax",
    "error_frac",
    "recall",
    "empty_masks",
    "input_mean",
    "input_std",
)


def signal_names(num_outputs: int) -> tuple[str, ...]:
    """The signal columns for a model with ``num_outputs`` output channels."""
    extra: tuple[str, ...] = ()
    if num_outputs > 1:
        extra = tuple(f"pos_frac_{k}" for k in range(num_outputs)) + tuple(
            f"mask_frac_{k}" for k in range(num_outputs)
        )
    return _BASE + extra


class SignalModel(keras.Model):
    """Training wrapper around a U-Net that records per-step signals.

    Args:
        unet: a model from :func:`core.model.build_unet` (it must have the
            layers named ``logits`` and ``output``).
        activation: ``"sigmoid"`` or ``"softmax"``.
        num_outputs: output channels.
        capacity: rows kept in the ring buffer; :meth:`drain` must be called
            at least this often (in steps).
        signals: compute the signals (off: only the batch loss is recorded).

    Not thread-safe: call :meth:`drain` between steps, from the thread that
    runs ``fit`` (a batch-begin callback).
    """

    def __init__(
        self,
        unet: keras.Model,
        *,
        activation: str,
        num_outputs: int,
        capacity: int = 256,
        signals: bool = True,
    ) -> None:
        super().__init__(name="tilewatch_signals")
        self.heads = keras.Model(
            unet.inputs,
            [unet.get_layer("logits").output, unet.get_layer("output").output],
            name="unet_heads",
        )
        self.activation = activation
        self.num_outputs = int(num_outputs)
        self.capacity = int(capacity)
        self.compute_signals = bool(signals)
        self.names = signal_names(self.num_outputs) if signals else ("loss", "lr")
        with tf.init_scope():
            self._rows = tf.Variable(
                tf.fill([self.capacity, len(self.names)], math.nan), trainable=False, name="signal_rows"
            )
            self._count = tf.Variable(0, dtype=tf.int64, trainable=False, name="signal_count")
        self._read = 0

    def call(self, inputs: Any, training: bool = False) -> Any:
        return self.heads(inputs, training=training)[1]

    # -- the step ------------------------------------------------------------
    def train_step(self, data: Any) -> dict[str, Any]:
        x, y = data[0], data[1]
        with tf.GradientTape() as tape:
            logits, probs = self.heads(x, training=True)
            loss = self._compute_loss(x=x, y=y, y_pred=probs, training=True)
            self._loss_tracker.update_state(
                _loss_module.unscale_loss_for_distribution(loss), sample_weight=tf.shape(x)[0]
            )
            scaled = self.optimizer.scale_loss(loss)
        weights = self.trainable_variables
        grads = tape.gradient(scaled, weights)
        lr = tf.cast(self.optimizer.learning_rate, tf.float32)
        before = [tf.identity(w) for w in weights] if self.compute_signals else None
        self.optimizer.apply_gradients(zip(grads, weights))
        if self.compute_signals:
            row = self._signals(x, y, logits, probs, loss, lr, grads, weights, before)
        else:
            row = tf.stack([tf.cast(loss, tf.float32), lr])
        self._rows[self._count % self.capacity].assign(row)
        self._count.assign_add(1)
        return self.compute_metrics(x, y, probs, sample_weight=None)

    def _signals(self, x, y, logits, probs, loss, lr, grads, weights, before) -> tf.Tensor:
        f32 = tf.float32
        probs = tf.cast(probs, f32)
        logits = tf.cast(logits, f32)
        y = tf.cast(y, f32)
        x = tf.cast(x, f32)
        grad_norm = tf.linalg.global_norm([tf.cast(g, f32) for g in grads if g is not None])
        scale = getattr(self.optimizer, "dynamic_scale", None)
        if scale is not None:  # LossScaleOptimizer: report the unscaled norm
            grad_norm = grad_norm / tf.cast(scale, f32)
        delta = tf.linalg.global_norm([tf.cast(w - b, f32) for w, b in zip(weights, before)])
        norm = tf.linalg.global_norm([tf.cast(b, f32) for b in before])
        update_ratio = delta / tf.maximum(norm, 1e-12)

        if self.activation == "softmax":
            k = self.num_outputs
            pred = tf.argmax(probs, axis=-1, output_type=tf.int32)
            true = tf.argmax(y, axis=-1, output_type=tf.int32)
            pred_fg = tf.cast(pred != 0, f32)
            true_fg = tf.cast(true != 0, f32)
            top = tf.reduce_max(probs, axis=-1)
            pinned = tf.reduce_mean(tf.cast(top > 1 - PINNED, f32))
            pinned_low = tf.reduce_mean(tf.cast(probs[..., 0] > 1 - PINNED, f32))
            pinned_high = pinned - pinned_low
            counts = tf.reduce_sum(tf.one_hot(pred, k, dtype=f32), axis=[0, 1, 2])
            dominant_class = tf.cast(tf.argmax(counts), f32)
            dominant_frac = tf.reduce_max(counts) / tf.maximum(tf.reduce_sum(counts), 1.0)
            two = tf.math.top_k(logits, k=2).values
            margin = two[..., 0] - two[..., 1]
            logit_mean = tf.reduce_mean(margin)
            error = tf.reduce_mean(tf.cast(pred != true, f32))
            per_pred = tf.reduce_mean(tf.one_hot(pred, k, dtype=f32), axis=[0, 1, 2])
            per_true = tf.reduce_mean(y, axis=[0, 1, 2])
        else:
            pred_b = tf.cast(probs > 0.5, f32)
            true_b = tf.cast(y > 0.5, f32)
            pred_fg, true_fg = pred_b, true_b
            low = tf.reduce_mean(tf.cast(probs < PINNED, f32))
            pinned_high = tf.reduce_mean(tf.cast(probs > 1 - PINNED, f32))
            pinned_low = low
            pinned = low + pinned_high
            pos = tf.reduce_mean(pred_b)
            dominant_class = tf.cast(pos > 0.5, f32)
            per_pred = tf.reduce_mean(pred_b, axis=[0, 1, 2])
            dominant_frac = tf.reduce_mean(tf.maximum(per_pred, 1.0 - per_pred))
            logit_mean = tf.reduce_mean(logits)
            error = tf.reduce_mean(tf.abs(pred_b - true_b))
            per_true = tf.reduce_mean(true_b, axis=[0, 1, 2])

        _, var = tf.nn.moments(logits, axes=[1, 2])
        spread = tf.reduce_mean(tf.sqrt(tf.maximum(var, 0.0)))
        fg_true = tf.reduce_sum(true_fg)
        recall = tf.where(
            fg_true > 0, tf.reduce_sum(pred_fg * true_fg) / tf.maximum(fg_true, 1.0), tf.constant(math.nan)
        )
        image_fg = tf.reduce_sum(true_fg, axis=list(range(1, len(true_fg.shape))))
        empty = tf.reduce_mean(tf.cast(image_fg == 0, f32))
        x_mean, x_var = tf.nn.moments(x, axes=list(range(len(x.shape))))
        values = [
            tf.cast(loss, f32),
            lr,
            grad_norm,
            update_ratio,
            tf.reduce_mean(pred_fg),
            tf.reduce_mean(true_fg),
            pinned,
            pinned_low,
            pinned_high,
            dominant_frac,
            dominant_class,
            logit_mean,
            spread,
            tf.reduce_max(tf.abs(logits)),
            error,
            recall,
            empty,
            x_mean,
            tf.sqrt(x_var),
        ]
        if self.num_outputs > 1:
            values += tf.unstack(tf.reshape(per_pred, [self.num_outputs]))
            values += tf.unstack(tf.reshape(per_true, [self.num_outputs]))
        return tf.stack([tf.cast(v, f32) for v in values])

    # -- host side -----------------------------------------------------------
    @property
    def steps_run(self) -> int:
        """Steps recorded so far (host counter, no device sync)."""
        return self._read

    def set_step(self, step: int) -> None:
        """Start counting at ``step`` (a resumed run); drops unread rows."""
        self._count.assign(int(step))
        self._read = int(step)

    def drain(self) -> tuple[int, np.ndarray]:
        """Return ``(first_step, rows)`` of every row written since the last call.

        One device-to-host transfer. Rows older than ``capacity`` steps are
        lost (they come back as NaN rows); call it often enough.
        """
        count = int(self._count.numpy())
        first = self._read
        n = count - first
        if n <= 0:
            return first, np.empty((0, len(self.names)), np.float32)
        table = self._rows.numpy()
        idx = np.arange(first, count) % self.capacity
        rows = table[idx]
        if n > self.capacity:
            rows[: n - self.capacity] = np.nan
        self._read = count
        return first, rows
