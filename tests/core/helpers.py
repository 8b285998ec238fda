"""Small helpers shared by the trainer, monitor and CLI tests."""

from __future__ import annotations

import keras

#: A tiny, fast configuration (64² patches, depth 2, 8 filters).
TINY = {
    "data.patch_size": 64,
    "data.val_fraction": 0.25,
    "model.depth": 2,
    "model.base_filters": 8,
    "train.batch_size": 4,
    "train.epochs": 2,
    "train.steps_per_epoch": 8,
    "train.patience": 0,
    "monitor.probe_tiles": 2,
}

#: The seed's loss and optimizer on the tiny model.
SEEDLIKE = {
    **TINY,
    "train.loss": "jaccard",
    "train.jaccard_smooth": 1e-12,
    "train.optimizer": "sgd",
    "train.learning_rate": 0.01,
    "train.nesterov": True,
    "model.batch_norm": False,
}


class PinOutputs(keras.callbacks.Callback):
    """Force a collapse deterministically: set the output bias to ``bias`` before step ``at``.

    Like Keras' own TerminateOnNaN test feeds an ``inf`` target, this pins
    every sigmoid output (−50 → all background, +50 → all foreground).
    """

    def __init__(self, *, at: int, bias: float) -> None:
        super().__init__()
        self.at, self.bias, self.step = at, bias, 0

    def on_train_begin(self, logs=None):
        self.step = 0

    def on_train_batch_begin(self, batch, logs=None):
        if self.step == self.at:
            layer = self.model.heads.get_layer("logits")
            kernel, bias = layer.get_weights()
            layer.set_weights([kernel * 0.0, bias * 0.0 + self.bias])
        self.step += 1
