"""The learning-rate schedule: piecewise constant by optimizer iteration.

It is a Keras ``LearningRateSchedule``, so it is saved with the optimizer in a
``.keras`` checkpoint and a resumed run continues on the same schedule. A
rollback multiplies the whole schedule by ``monitor.rollback_lr_factor``
through :meth:`StepSchedule.scale_by`; the scale is part of the saved config.
This module never imports Qt.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import tensorflow as tf

__all__ = ["StepSchedule"]


@keras.saving.register_keras_serializable(package="tilewatch")
class StepSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """``lr(step) = scale * values[j]`` with ``j`` the number of boundaries <= step.

    Args:
        initial: the learning rate before the first boundary.
        boundaries: optimizer iterations (0-based, increasing) where the rate
            changes.
        values: the rate from each boundary on (same length as ``boundaries``).
        scale: multiplier of every value (rollbacks lower it).

    Raises:
        ValueError: boundaries and values differ in length or are not increasing.
    """

    def __init__(
        self,
        initial: float,
        boundaries: Sequence[int] = (),
        values: Sequence[float] = (),
        scale: float = 1.0,
    ) -> None:
        if len(boundaries) != len(values):
            raise ValueError("StepSchedule: boundaries and values must have the same length")
        if list(boundaries) != sorted(set(int(b) for b in boundaries)):
            raise ValueError("StepSchedule: boundaries must be strictly increasing")
        self.initial = float(initial)
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        with tf.init_scope():
            self._scale = tf.Variable(float(scale), trainable=False, dtype=tf.float32, name="lr_scale")
        self._table = tf.constant([self.initial, *self.values], dtype=tf.float32)
        self._bounds = tf.constant(self.boundaries or [2**62], dtype=tf.int64)

    @classmethod
    def from_config_values(cls, learning_rate: float, schedule: Sequence[Sequence[float]]) -> StepSchedule:
        """Build from ``train.learning_rate`` and ``train.lr_schedule`` pairs."""
        return cls(learning_rate, [int(s) for s, _ in schedule], [float(v) for _, v in schedule])

    @property
    def scale(self) -> float:
        return float(self._scale.numpy())

    def scale_by(self, factor: float) -> None:
        """Multiply the current rate and every later scheduled value by ``factor``."""
        self._scale.assign(self._scale * float(factor))

    def value_at(self, step: int) -> float:
        """The learning rate at optimizer iteration ``step``, in Python."""
        j = sum(1 for b in self.boundaries if b <= step)
        return ([self.initial, *self.values][j]) * self.scale

    def __call__(self, step: Any) -> tf.Tensor:
        step = tf.cast(step, tf.int64)
        if self.boundaries:
            j = tf.reduce_sum(tf.cast(self._bounds <= step, tf.int32))
        else:
            j = tf.constant(0, tf.int32)
        return tf.gather(self._table, j) * self._scale

    def get_config(self) -> dict[str, Any]:
        return {
            "initial": self.initial,
            "boundaries": list(self.boundaries),
            "values": list(self.values),
            "scale": self.scale,
        }
