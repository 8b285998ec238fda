"""Training orchestration: tiles → pipeline → U-Net + monitor → events → run store.

:class:`Trainer` runs Keras ``fit`` and records everything in a run directory
(see :mod:`core.runstore`). ``run()`` blocks and is thread-agnostic; ``stop()``,
``pause()`` and ``resume()`` are thread-safe and honoured at batch boundaries.
Progress leaves it only as :mod:`core.events` dataclasses passed to the
listener. It never imports Qt.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from core.config import Config, ConfigError
from core.events import (
    EarlyStop,
    EpochEnd,
    ErrorEvent,
    Event,
    RunFinished,
    RunStarted,
    StepsLogged,
    Stopped,
    WarningEvent,
)
from core.runstore import RunError, RunWriter, atomic_path, atomic_write_text, is_run_dir
from core.tiles import DatasetInfo, TileInfo, scan_dataset

__all__ = ["Trainer", "TrainResult"]

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]

#: Steps between two bulk reads of the in-step signals.
DRAIN_EVERY = 4


@dataclass(frozen=True)
class TrainResult:
    """What a finished :meth:`Trainer.run` returns."""

    status: str
    epochs_done: int
    best_val_loss: float | None
    run_dir: Path
    steps: int
    saturation: dict[str, Any] | None


class Trainer:
    """Train a U-Net on a tile folder and record the run.

    Args:
        cfg: the resolved configuration.
        data_dir: the tile folder (``images/`` and ``masks/``).
        run_dir: the run directory to create (it must not hold a run).
        listener: called with every event; must be cheap; may be called from
            Keras' callback thread.
        callbacks: extra Keras callbacks, run as in ``fit``.
        init_checkpoint: a ``.keras`` file whose weights start the run.
        parent: ``{"run": dir, "checkpoint": path}`` recorded in run.json when
            this run starts from another run's checkpoint.

    Use :meth:`from_run` to continue a run that was stopped or killed.
    """

    def __init__(
        self,
        cfg: Config,
        *,
        data_dir: str | os.PathLike[str],
        run_dir: str | os.PathLike[str],
        listener: Listener | None = None,
        callbacks: Sequence[Any] = (),
        init_checkpoint: str | os.PathLike[str] | None = None,
        parent: Mapping[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        self.data_dir = Path(data_dir)
        self.run_dir = Path(run_dir)
        self.listener = listener
        self.user_callbacks = list(callbacks)
        self.init_checkpoint = Path(init_checkpoint) if init_checkpoint else None
        self.parent = dict(parent) if parent else None
        #: Batches per epoch, known once the run has started (``None`` before).
        self.steps_per_epoch: int | None = None
        self._resuming = False
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()

    @classmethod
    def from_run(
        cls,
        run_dir: str | os.PathLike[str],
        *,
        listener: Listener | None = None,
        callbacks: Sequence[Any] = (),
    ) -> Trainer:
        """A trainer that continues ``run_dir`` exactly where its last checkpoint left it.

        Raises:
            RunError: the folder is not a run, or its run.json is unreadable.
        """
        from core.config import _from_dict

        path = Path(run_dir)
        if not is_run_dir(path):
            raise RunError(f"{path}: not a Tilewatch run (no run.json); --resume needs a run folder")
        try:
            info = json.loads((path / "run.json").read_text(encoding="utf-8"))
            cfg = _from_dict(info["config"], source=f"{path / 'run.json'} [config]")
            data_dir = info["data_dir"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RunError(f"{path / 'run.json'}: cannot resume from it ({exc})") from None
        trainer = cls(cfg, data_dir=data_dir, run_dir=path, listener=listener, callbacks=callbacks)
        trainer._resuming = True
        return trainer

    # -- controls (thread-safe) -----------------------------------------------
    def stop(self) -> None:
        """Ask the run to stop at the next batch boundary (status ``stopped``)."""
        self._stop.set()
        self._running.set()

    def pause(self) -> None:
        """Hold the run at the next batch boundary; it holds no CPU while paused."""
        self._running.clear()

    def resume(self) -> None:
        """Continue a paused run."""
        self._running.set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    # -- the run ----------------------------------------------------------------
    def run(self) -> TrainResult:
        """Train until done, early-stopped, stopped or collapsed.

        Returns:
            A :class:`TrainResult`.

        Raises:
            DatasetError, ConfigError, RunError: bad input, raised before
                anything is written.
            Exception: anything that fails during training; the run is then
                left readable with status ``failed`` and an ``error`` event.
        """
        dataset = scan_dataset(self.data_dir, patch_size=self.cfg.data.patch_size)
        if self.cfg.train.strategy in ("mirrored", "multi_worker"):
            raise ConfigError(
                f"'train.strategy' = {self.cfg.train.strategy!r} is not supported yet; "
                "use \"auto\" or \"default\""
            )
        if self.init_checkpoint is not None and not self.init_checkpoint.is_file():
            raise RunError(f"{self.init_checkpoint}: checkpoint not found")
        writer = RunWriter(self.run_dir, resume=self._resuming)
        if self._resuming:
            _check_same_dataset(writer.info, dataset)
        session = _Session(self, dataset, writer)
        return session.run()

    def _emit(self, event: Event, writer: RunWriter) -> None:
        if not isinstance(event, StepsLogged):
            writer.append_event(event)
        if self.listener is not None:
            try:
                self.listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill training
                log.exception("listener failed on %s event", event.type)


def _check_same_dataset(info: Mapping[str, Any], dataset: DatasetInfo) -> None:
    names = {t.name for t in dataset.tiles}
    split = info.get("split", {})
    missing = sorted((set(split.get("train", [])) | set(split.get("val", []))) - names)
    if missing:
        raise RunError(
            f"{dataset.root}: tiles of the run's split are missing: {', '.join(missing[:10])}"
            + (" …" if len(missing) > 10 else "")
            + "; restore them or start a new run"
        )


def _now_iso() -> str:
    return _dt.datetime.now(_dt.timezone.utc).astimezone().isoformat(timespec="seconds")


class _Session:
    """One call of Trainer.run(): builds everything and drives fit()."""

    def __init__(self, trainer: Trainer, dataset: DatasetInfo, writer: RunWriter) -> None:
        self.t = trainer
        self.cfg = trainer.cfg
        self.dataset = dataset
        self.writer = writer
        self.status: str | None = None
        self.collapsed = False
        self.start_epoch = 0
        self.start_step = 0
        self.best_val: float | None = None
        self.wait = 0
        self.saturation: dict[str, Any] | None = None

    def emit(self, event: Event) -> None:
        self.t._emit(event, self.writer)

    # -------------------------------------------------------------------------
    def run(self) -> TrainResult:
        from core.device import describe_device

        cfg = self.cfg
        device = describe_device()
        tiles = {t.name: t for t in self.dataset.tiles}
        prior_policy = keras.mixed_precision.global_policy().name
        self._prepare_records(device, tiles)
        try:
            if cfg.train.mixed_precision and device["mixed_precision_available"]:
                keras.mixed_precision.set_global_policy("mixed_float16")
            keras.utils.set_random_seed(cfg.data.seed)
            result = self._train(device, tiles)
        except BaseException as exc:
            self.status = "failed"
            message = f"{type(exc).__name__}: {exc}"
            with contextlib.suppress(Exception):
                self.emit(ErrorEvent(step=self._step(), epoch=self._epoch(), message=message))
                self._finish()
            raise
        finally:
            keras.mixed_precision.set_global_policy(prior_policy)
        return result

    # -------------------------------------------------------------------------
    def _prepare_records(self, device: Mapping[str, Any], tiles: Mapping[str, TileInfo]) -> None:
        from core.pipeline import Normalization, compute_normalization, split_tiles

        cfg = self.cfg
        if self.t._resuming:
            info = self.writer.info
            self.split_train = list(info["split"]["train"])
            self.split_val = list(info["split"]["val"])
            self.normalization = Normalization.from_dict(info["normalization"])
            point = info.get("resume_point") or {"epoch": 0, "step": 0}
            self.start_epoch, self.start_step = int(point["epoch"]), int(point["step"])
            self.writer.truncate_after(step=self.start_step, epoch=self.start_epoch)
            self._restore_early_stopping_state()
            self.writer.update(
                status="running",
                device=dict(device),
                finished=None,
                resumed=[*info.get("resumed", []), {"time": _now_iso(), "epoch": self.start_epoch, "step": self.start_step}],
            )
            return
        split = split_tiles(sorted(tiles), val_fraction=cfg.data.val_fraction, seed=cfg.data.seed)
        self.split_train, self.split_val = list(split.train), list(split.val)
        self.normalization = compute_normalization(
            [tiles[n] for n in self.split_train], method=cfg.data.normalize, seed=cfg.data.seed
        )
        self.writer.create(
            {
                "data_dir": str(self.dataset.root.resolve()),
                "config": cfg.to_dict(),
                "split": {"train": self.split_train, "val": self.split_val},
                "normalization": self.normalization.to_dict(),
                "dataset": {
                    "tiles": len(self.dataset.tiles),
                    "channels": self.dataset.channels,
                    "mask_kind": self.dataset.mask_kind,
                    "num_outputs": self.dataset.num_outputs,
                    "activation": self.dataset.activation,
                },
                "versions": {
                    "python": platform.python_version(),
                    "tensorflow": tf.__version__,
                    "keras": keras.__version__,
                    "tilewatch": _version(),
                },
                "device": dict(device),
                "distribution": {"strategy": "default", "replicas": 1, "workers": 1},
                "status": "running",
                "started": _now_iso(),
                "finished": None,
                "saturation": None,
                "parent": self.t.parent,
                "resume_point": None,
            }
        )

    def _restore_early_stopping_state(self) -> None:
        from core.runstore import _read_csv_columns

        hist = _read_csv_columns(self.writer.path / "history.csv")
        vals = [v for v in hist.get("val_loss", []) if math.isfinite(v)]
        if vals:
            best_i = min(range(len(vals)), key=vals.__getitem__)
            self.best_val = vals[best_i]
            self.wait = len(vals) - 1 - best_i

    def _step(self) -> int:
        model = getattr(self, "signal_model", None)
        return model.steps_run if model is not None else self.start_step

    def _epoch(self) -> int:
        return getattr(self, "current_epoch", self.start_epoch) + 1

    # -------------------------------------------------------------------------
    def _train(self, device: Mapping[str, Any], tiles: Mapping[str, TileInfo]) -> TrainResult:
        from core.losses import make_loss, make_metrics
        from core.model import build_unet
        from core.pipeline import make_train_dataset, make_val_dataset, steps_per_pass
        from core.preflight import preflight
        from core.schedule import StepSchedule
        from core.signals import SignalModel

        cfg = self.cfg
        ds = self.dataset
        train_tiles = [tiles[n] for n in self.split_train]
        val_tiles = [tiles[n] for n in self.split_val]
        steps_per_epoch = cfg.train.steps_per_epoch or steps_per_pass(len(train_tiles), batch_size=cfg.train.batch_size)
        self.steps_per_epoch = self.t.steps_per_epoch = steps_per_epoch
        self.writer.update(steps_per_epoch=steps_per_epoch)

        strategy = tf.distribute.get_strategy()
        with strategy.scope():
            loss = make_loss(cfg.train.loss, activation=ds.activation, smooth=cfg.train.jaccard_smooth)
            unet, optimizer = self._model_and_optimizer(build_unet, StepSchedule, loss)
            self.unet, self.optimizer = unet, optimizer
            model = SignalModel(
                unet,
                activation=ds.activation,
                num_outputs=ds.num_outputs,
                signals=cfg.monitor.enabled,
            )
            model.compile(
                optimizer=optimizer,
                loss=loss,
                metrics=make_metrics(activation=ds.activation, num_outputs=ds.num_outputs),
            )
        model.set_step(self.start_step)
        self.signal_model = model

        stream = {
            "kind": ds.mask_kind,
            "num_outputs": ds.num_outputs,
            "normalization": self.normalization,
            "patch_size": cfg.data.patch_size,
            "batch_size": cfg.train.batch_size,
            "seed": cfg.data.seed,
        }
        train_ds = make_train_dataset(
            train_tiles,
            augment=cfg.data.augment,
            steps_per_epoch=steps_per_epoch,
            first_epoch=self.start_epoch,
            **stream,
        )
        val_ds = make_val_dataset(val_tiles, **stream) if val_tiles else None

        probes = _Probes(self, val_tiles or train_tiles)
        recorder = _Recorder(self, probes)
        callbacks: list[Any] = [recorder]
        self.monitor = None
        if cfg.monitor.enabled:
            from core.monitor import MonitorHooks, SaturationMonitor

            self.monitor = SaturationMonitor(
                cfg,
                activation=ds.activation,
                num_outputs=ds.num_outputs,
                hooks=MonitorHooks(
                    emit=self.emit,
                    snapshot_probes=probes.snapshot,
                    on_saturation=self._record_saturation,
                    set_collapsed=self._set_collapsed,
                    scale_learning_rate=self._scale_lr,
                ),
            )
            callbacks.append(self.monitor)
            recorder.observers.append(self.monitor)
        callbacks.append(_EpochTensorBoard(log_dir=str(self.writer.tensorboard_dir), update_freq="epoch", write_graph=False, profile_batch=0))
        self.early_stopping = None
        if cfg.train.patience > 0 and val_ds is not None:
            self.early_stopping = _ResumableEarlyStopping(
                monitor="val_loss", patience=cfg.train.patience, mode="min", resume_best=self.best_val, resume_wait=self.wait
            )
            callbacks.append(self.early_stopping)
        callbacks.extend(self.t.user_callbacks)

        self.emit(
            RunStarted(step=self.start_step, epoch=self.start_epoch + 1, config=cfg.to_dict(), device=dict(device))
        )
        if device["kind"] == "cpu":
            self._warn("cpu_fallback", f"Training on the CPU: {device['reason'] or 'no GPU found'}.")
        if cfg.train.mixed_precision and not device["mixed_precision_available"]:
            self._warn(
                "mixed_precision_unavailable",
                "Mixed precision needs a GPU with compute capability 7.0+; training in float32.",
            )
        if not self.t._resuming:
            for w in preflight(cfg, band_ranges=ds.band_ranges, device=device):
                self._warn(f"preflight_{w.kind}", w.message, signals={"fix": dict(w.fix)})
            probes.write_probe_list()

        if self.start_epoch < cfg.train.epochs and not self.t._stop.is_set():
            model.fit(
                train_ds,
                validation_data=val_ds,
                epochs=cfg.train.epochs,
                initial_epoch=self.start_epoch,
                steps_per_epoch=steps_per_epoch,
                callbacks=callbacks,
                verbose=0,
                shuffle=False,
            )
        recorder.flush()
        if self.status is None:
            if self.collapsed:
                self.status = "collapsed"
            elif self.t._stop.is_set():
                self.status = "stopped"
                self.emit(Stopped(step=self._step(), epoch=self._epoch()))
            elif self.early_stopping is not None and self.early_stopping.stopped_epoch > 0:
                self.status = "early_stopped"
                self.emit(EarlyStop(step=self._step(), epoch=self._epoch()))
            else:
                self.status = "completed"
        self._finish()
        return TrainResult(
            status=self.status,
            epochs_done=recorder.epochs_done,
            best_val_loss=recorder.best_val,
            run_dir=self.writer.path,
            steps=self._step(),
            saturation=self.saturation,
        )

    def _warn(self, kind: str, message: str, *, signals: Mapping[str, Any] | None = None) -> None:
        """A run-level warning (device, configuration), placed where the run starts."""
        self.emit(
            WarningEvent(
                step=self.start_step,
                epoch=self.start_epoch + 1,
                kind=kind,
                signals=dict(signals or {}),
                message=message,
            )
        )

    def _model_and_optimizer(self, build_unet: Callable[..., Any], StepSchedule: type, loss: Any) -> tuple[Any, Any]:
        cfg = self.cfg
        ds = self.dataset
        ckpt = self.writer.checkpoints_dir / "last.keras"
        if self.t._resuming and ckpt.is_file():
            unet = keras.saving.load_model(ckpt, compile=True, safe_mode=True)
            optimizer = unet.optimizer
            return unet, optimizer
        unet = build_unet(
            (None, None, ds.channels),
            ds.num_outputs,
            depth=cfg.model.depth,
            base_filters=cfg.model.base_filters,
            batch_norm=cfg.model.batch_norm,
            dropout=cfg.model.dropout,
            output_activation=ds.activation,
        )
        if self.t.init_checkpoint is not None:
            source = keras.saving.load_model(self.t.init_checkpoint, compile=False, safe_mode=True)
            unet.set_weights(source.get_weights())
        schedule = StepSchedule.from_config_values(cfg.train.learning_rate, cfg.train.lr_schedule)
        kwargs: dict[str, Any] = {"learning_rate": schedule}
        if cfg.train.clipnorm > 0:
            kwargs["clipnorm"] = cfg.train.clipnorm
        name = cfg.train.optimizer
        if name == "sgd":
            optimizer = keras.optimizers.SGD(momentum=cfg.train.momentum, nesterov=cfg.train.nesterov, **kwargs)
        elif name == "adam":
            optimizer = keras.optimizers.Adam(**kwargs)
        elif name == "adamw":
            optimizer = keras.optimizers.AdamW(**kwargs)
        else:
            optimizer = keras.optimizers.RMSprop(**kwargs)
        if keras.mixed_precision.global_policy().name == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        # The U-Net carries the optimizer so that its .keras checkpoint holds the
        # optimizer state a resumed run needs.
        unet.compile(optimizer=optimizer, loss=loss)
        return unet, optimizer

    # -- monitor hooks ---------------------------------------------------------
    def _record_saturation(self, finding) -> None:
        entry = {
            "epoch": finding.onset_epoch,
            "step": finding.step,
            "onset_step": finding.onset_step,
            "kind": finding.kind,
        }
        info = self.writer.info
        history = [*info.get("saturations", []), entry]
        if self.saturation is None:
            self.saturation = entry
        self.writer.update(saturation=self.saturation, saturations=history)

    def _set_collapsed(self) -> None:
        self.collapsed = True

    def _schedule(self):
        opt = self.optimizer
        inner = getattr(opt, "inner_optimizer", opt)
        return inner._learning_rate

    def _scale_lr(self, factor: float) -> float:
        schedule = self._schedule()
        schedule.scale_by(factor)
        return float(schedule.value_at(int(self.optimizer.iterations.numpy())))

    def current_lr(self) -> float:
        return float(self._schedule().value_at(int(self.optimizer.iterations.numpy())))

    def _finish(self) -> None:
        self.writer.update(status=self.status, finished=_now_iso())
        self.emit(RunFinished(step=self._step(), epoch=self._epoch(), status=self.status or "failed"))


def _version() -> str:
    from core import __version__

    return __version__


# ---------------------------------------------------------------------------
class _Probes:
    """The probe tiles: predicted at full size at every epoch end and at detection."""

    def __init__(self, session: _Session, candidates: Sequence[TileInfo]) -> None:
        from core.pipeline import load_tile

        self.session = session
        n = session.cfg.monitor.probe_tiles
        ds = session.dataset
        chosen: list[TileInfo] = []
        if n > 0 and candidates:
            size = (candidates[0].height, candidates[0].width)
            same = [t for t in candidates if (t.height, t.width) == size]
            chosen = _informative_first(same[: max(4 * n, 16)], kind=ds.mask_kind, num_outputs=ds.num_outputs)[:n]
        self.tiles = chosen
        self.images = None
        self.masks = None
        if chosen:
            pairs = [
                load_tile(t, normalization=session.normalization, kind=ds.mask_kind, num_outputs=ds.num_outputs)
                for t in chosen
            ]
            self.images = np.stack([p[0] for p in pairs])
            self.masks = np.stack([p[1] for p in pairs])
        self._writer = None

    def write_probe_list(self) -> None:
        if not self.tiles:
            return
        atomic_write_text(
            self.session.writer.predictions_dir / "probe.json",
            json.dumps(
                {
                    "tiles": [t.name for t in self.tiles],
                    "images": [str(Path(t.image_path).resolve()) for t in self.tiles],
                    "masks": [str(Path(t.mask_path).resolve()) for t in self.tiles],
                },
                indent=2,
            )
            + "\n",
        )

    def _predict(self):
        from core.model import predict_full

        return predict_full(self.session.unet, self.images, batch_size=1, depth=self.session.cfg.model.depth)

    def _save(self, path: Path, probs: np.ndarray) -> None:
        import tifffile

        if probs.shape[-1] == 1:
            probs = probs[..., 0]
        with atomic_path(path) as tmp:
            tifffile.imwrite(
                tmp, np.ascontiguousarray(probs, dtype=np.float32), compression="zlib", compressionargs={"level": 1}
            )

    def epoch_end(self, epoch: int) -> None:
        """Predict and save ``epoch-NNNN.tif`` (1-based epoch); log to TensorBoard."""
        if self.images is None:
            return
        probs = self._predict()
        self._save(self.session.writer.predictions_dir / f"epoch-{epoch:04d}.tif", probs)
        self._tensorboard(epoch, probs)

    def snapshot(self, step: int) -> None:
        """Predict now into ``step-NNNNNNN.tif`` (taken at a detection)."""
        if self.images is None:
            return
        self._save(self.session.writer.predictions_dir / f"step-{step:07d}.tif", self._predict())

    def _tensorboard(self, epoch: int, probs: np.ndarray) -> None:
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.session.writer.tensorboard_dir / "probes"))
            with self._writer.as_default():
                tf.summary.image("probe/mask", _as_image(self.masks), step=0, max_outputs=len(self.tiles))
        with self._writer.as_default():
            tf.summary.image("probe/prediction", _as_image(probs), step=epoch, max_outputs=len(self.tiles))
            self._writer.flush()


def _informative_first(tiles: Sequence[TileInfo], *, kind: str, num_outputs: int) -> list[TileInfo]:
    """Order probe candidates so tiles whose masks hold both classes come first.

    A probe tile with an empty (or full) mask cannot show a collapse to that
    class, so it is the last choice. The order is otherwise kept (stable).
    """
    from core.tiles import read_mask

    def score(tile: TileInfo) -> int:
        mask = read_mask(tile, kind=kind, num_outputs=num_outputs)
        foreground = 1.0 - mask[..., 0].mean() if kind == "multiclass" else mask.mean()
        return 0 if 0.005 <= foreground <= 0.995 else 1

    return sorted(tiles, key=score)


def _as_image(array: np.ndarray) -> np.ndarray:
    """(N, H, W, K) probabilities → (N, H, W, 1) foreground images for TensorBoard."""
    if array.ndim == 3:
        array = array[..., None]
    if array.shape[-1] > 1:  # several outputs: show "not background"
        array = 1.0 - array[..., :1]
    return np.clip(array, 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------
class _Recorder(keras.callbacks.Callback):
    """Controls, steps.csv, history.csv, checkpoints and probes, in that order.

    It overrides only batch-*begin* hooks (which Keras calls synchronously and
    with no logs to convert), so batch-end dispatch stays asynchronous.
    """

    def __init__(self, session: _Session, probes: _Probes) -> None:
        super().__init__()
        self.s = session
        self.probes = probes
        self.observers: list[Any] = []
        self.epochs_done = session.start_epoch
        self.best_val = session.best_val
        self.epoch_first_step = session.start_step
        self.current_epoch = session.start_epoch
        self._times: dict[int, float] = {}
        self.record_seconds: list[float] = []

    # controls + bulk signal reads
    def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
        t = self.s.t
        if not t._running.is_set():
            t._running.wait()
        if t._stop.is_set():
            self.model.stop_training = True
            return
        step = self.epoch_first_step + batch
        self._times[step] = time.time()
        if batch and batch % DRAIN_EVERY == 0:
            self.flush()
        if self.s.monitor is not None:
            self.s.monitor.before_step(step)

    def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
        self.current_epoch = epoch
        self.s.current_epoch = epoch
        self.epoch_first_step = self.s.signal_model.steps_run

    def flush(self) -> None:
        model = self.s.signal_model
        first, table = model.drain()
        if not len(table):
            return
        names = model.names
        rows = []
        for i, values in enumerate(table):
            step = first + i
            row: dict[str, Any] = {
                "step": step,
                "epoch": self.current_epoch + 1,
                "batch": step - self.epoch_first_step,
                "time": round(self._times.pop(step, time.time()), 3),
            }
            row.update({n: float(v) for n, v in zip(names, values)})
            rows.append(row)
        self.s.writer.append_steps(rows)
        self.s.emit(StepsLogged(step=rows[-1]["step"], epoch=rows[-1]["epoch"], rows=tuple(rows)))
        for observer in self.observers:
            observer.observe(rows)

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        began = time.perf_counter()
        self.flush()
        logs = dict(logs or {})
        e1 = epoch + 1
        row = {"epoch": e1}
        for key in sorted(logs, key=_metric_order):
            row[key] = float(logs[key])
        row["lr"] = self.s.current_lr()
        self.s.writer.append_history(row)
        self.epochs_done = e1
        val = row.get("val_loss")
        improved = val is not None and math.isfinite(val) and (self.best_val is None or val < self.best_val)
        if improved:
            self.best_val = val
        self.probes.epoch_end(e1)
        self._checkpoint(e1, improved)
        self.record_seconds.append(round(time.perf_counter() - began, 4))
        self.s.writer.update(
            resume_point={"epoch": e1, "step": self.s.signal_model.steps_run},
            epochs_done=e1,
            best_val_loss=self.best_val,
            timing={"epoch_records_s": self.record_seconds[-50:]},
        )
        self.s.emit(EpochEnd(step=self.s.signal_model.steps_run, epoch=e1, metrics=row))

    def _checkpoint(self, epoch: int, improved: bool) -> None:
        ckdir = self.s.writer.checkpoints_dir
        with atomic_path(ckdir / "last.keras") as tmp:
            self.s.unet.save(tmp)
            _copy_atomic(tmp, ckdir / f"epoch-{epoch:04d}.keras")
            if improved:
                _copy_atomic(tmp, ckdir / "best.keras")
        keep = self.s.cfg.train.keep_checkpoints
        if keep > 0:
            files = sorted(ckdir.glob("epoch-*.keras"))
            for old in files[:-keep]:
                if not self._protected(old):
                    old.unlink(missing_ok=True)

    def _protected(self, path: Path) -> bool:
        """The last healthy checkpoint before a saturation is never pruned."""
        sat = self.s.saturation
        return bool(sat) and path.name == f"epoch-{int(sat['epoch']) - 1:04d}.keras"


def _metric_order(key: str) -> tuple[int, str]:
    base = key[4:] if key.startswith("val_") else key
    return (0 if base == "loss" else 1, key.startswith("val_"), base)  # type: ignore[return-value]


def _copy_atomic(src: Path, dst: Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


class _EpochTensorBoard(keras.callbacks.TensorBoard):
    """Keras' TensorBoard callback with epoch scalars, marked async-safe.

    With ``update_freq="epoch"`` its batch-end hook only counts batches, so it
    is safe to dispatch asynchronously and must not force a sync every step.
    """

    async_safe = True


class _ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping, starting from a resumed run's best and wait."""

    def __init__(self, *, resume_best: float | None, resume_wait: int, **kwargs: Any) -> None:
        super().__init__(restore_best_weights=False, **kwargs)
        self._resume = (resume_best, resume_wait)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        super().on_train_begin(logs)
        best, wait = self._resume
        if best is not None:
            self.best = best
            self.wait = wait
