"""Training in the background: one QThread, one QObject worker (superqt style).

The Trainer's listener is called from a non-GUI thread (Keras' callback
thread); it only emits a signal, which Qt queues to the GUI thread. The worker
catches every exception, emits ``failed(str)`` and always emits ``finished``.
Cancel is ``Trainer.stop()``, honoured at a batch boundary: the thread is
never terminated from outside.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QThread, Signal, Slot

__all__ = ["TrainWorker", "RunController", "DeviceProbe"]

log = logging.getLogger(__name__)

#: A factory called in the worker thread that returns extra Keras callbacks
#: (tests use it to force a collapse deterministically).
CallbacksFactory = Callable[[], Sequence[Any]]

#: Niceness added to the threads that run TensorFlow. Linux threads inherit it,
#: so TensorFlow's own thread pools (created from these threads) run below the
#: GUI thread: on a machine with few cores the window keeps its slices.
TRAINING_NICENESS = 5


def lower_this_thread_priority(delta: int = TRAINING_NICENESS) -> None:
    """Renice the calling thread (Linux: per thread); elsewhere, or if refused, do nothing."""
    try:
        import os

        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + delta)
    except (AttributeError, OSError):
        pass


#: TensorFlow's first import is not safe from two threads at once (the device
#: probe and the worker): whoever comes first imports it, the other waits.
TF_IMPORT_LOCK = threading.Lock()


class TrainWorker(QObject):
    """Runs one ``core.trainer.Trainer`` to completion in the thread it is moved to."""

    event = Signal(object)  # a core.events.Event
    failed = Signal(str)
    finished = Signal(object)  # the TrainResult, or None when the run failed

    def __init__(
        self,
        cfg: Any,
        *,
        data_dir: Path,
        run_dir: Path,
        init_checkpoint: Path | None = None,
        parent_run: dict[str, str] | None = None,
        callbacks_factory: CallbacksFactory | None = None,
    ) -> None:
        super().__init__()
        self._cfg = cfg
        self._data_dir = Path(data_dir)
        self._run_dir = Path(run_dir)
        self._init_checkpoint = init_checkpoint
        self._parent_run = parent_run
        self._callbacks_factory = callbacks_factory
        self._lock = threading.Lock()
        self._trainer: Any = None
        self._stop_requested = False
        self._pause_requested = False

    # -- thread-safe controls (called from the GUI thread) ---------------------
    def stop(self) -> None:
        with self._lock:
            self._stop_requested = True
            if self._trainer is not None:
                self._trainer.stop()

    def pause(self) -> None:
        with self._lock:
            self._pause_requested = True
            if self._trainer is not None:
                self._trainer.pause()

    def resume(self) -> None:
        with self._lock:
            self._pause_requested = False
            if self._trainer is not None:
                self._trainer.resume()

    @Slot()
    def run(self) -> None:
        result = None
        lower_this_thread_priority()
        try:
            # Imported here, in the worker thread: TensorFlow loads off the GUI thread.
            with TF_IMPORT_LOCK:
                from core.trainer import Trainer

            callbacks = tuple(self._callbacks_factory()) if self._callbacks_factory else ()
            trainer = Trainer(
                self._cfg,
                data_dir=self._data_dir,
                run_dir=self._run_dir,
                listener=self.event.emit,
                callbacks=callbacks,
                init_checkpoint=self._init_checkpoint,
                parent=self._parent_run,
            )
            with self._lock:
                self._trainer = trainer
                if self._stop_requested:
                    trainer.stop()
                elif self._pause_requested:
                    trainer.pause()
            result = trainer.run()
        except BaseException as exc:  # noqa: BLE001 - every failure is shown in the window
            log.error("training failed:\n%s", traceback.format_exc())
            name = type(exc).__name__
            text = str(exc) or name
            self.failed.emit(text if isinstance(exc, ValueError) else f"{name}: {text}")
        finally:
            with self._lock:
                self._trainer = None
            self.finished.emit(result)


class RunController(QObject):
    """Owns the training thread; re-emits the worker's signals in the GUI thread."""

    event = Signal(object)
    failed = Signal(str)
    finished = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread: QThread | None = None
        self._worker: TrainWorker | None = None
        self.paused = False

    def is_running(self) -> bool:
        return self._thread is not None

    def start(self, cfg: Any, **kwargs: Any) -> None:
        if self._thread is not None:
            raise RuntimeError("a run is already in progress")
        thread = QThread()
        thread.setObjectName("tilewatch-training")
        worker = TrainWorker(cfg, **kwargs)
        worker.moveToThread(thread)
        worker.event.connect(self.event)
        worker.failed.connect(self.failed)
        worker.finished.connect(self._on_finished)
        thread.started.connect(worker.run)
        self._thread, self._worker, self.paused = thread, worker, False
        thread.start()

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop()

    def pause(self) -> None:
        if self._worker is not None:
            self._worker.pause()
            self.paused = True

    def resume(self) -> None:
        if self._worker is not None:
            self._worker.resume()
            self.paused = False

    def wait(self, msecs: int = 60_000) -> bool:
        """Block until the thread has ended (after a stop); True when it has."""
        if self._thread is None:
            return True
        return self._thread.wait(msecs)

    @Slot(object)
    def _on_finished(self, result: object) -> None:
        thread, worker = self._thread, self._worker
        self._thread = self._worker = None
        self.paused = False
        if thread is not None:
            thread.quit()
            thread.wait()
        if worker is not None:
            worker.deleteLater()
        if thread is not None:
            thread.deleteLater()
        self.finished.emit(result)


class DeviceProbe(QObject):
    """Asks ``core.device.describe_device()`` in a short-lived Python thread.

    It imports TensorFlow, which takes seconds: the window is up long before.
    """

    described = Signal(dict)

    def start(self) -> None:
        threading.Thread(target=self._run, name="tilewatch-device", daemon=True).start()

    def _run(self) -> None:
        lower_this_thread_priority()  # TensorFlow may create its thread pools here
        try:
            with TF_IMPORT_LOCK:
                from core.device import describe_device

                info = dict(describe_device())
        except Exception as exc:  # noqa: BLE001 - shown in the indicator
            info = {"kind": "unknown", "name": "", "reason": f"device check failed: {exc}"}
        try:
            self.described.emit(info)
        except RuntimeError:  # the window (and this object) are already gone
            pass
