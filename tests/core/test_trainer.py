"""core.trainer: real tiny fit() runs and the run directory they leave."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import keras
import numpy as np
import pytest
import tifffile

from core import Trainer, load_config, read_run
from core.events import Event, RunFinished, StepsLogged
from tests.core.helpers import TINY

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(synth_data):
    return synth_data(tiles=8, size=96, seed=3)


@pytest.fixture(scope="module")
def finished_run(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "a"
    seen: list[Event] = []
    batches = []

    class CountBatches(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            batches.append(batch)

    cfg = load_config(overrides={**TINY, "train.lr_schedule": [[10, 5e-4]]})
    result = Trainer(cfg, data_dir=data, run_dir=run_dir, listener=seen.append, callbacks=[CountBatches()]).run()
    return result, seen, batches


def test_run_directory_is_complete(finished_run):
    result, _, _ = finished_run
    assert result.status == "completed" and result.epochs_done == 2 and result.steps == 16
    run = read_run(result.run_dir)
    info = run.info
    assert info["status"] == "completed" and info["finished"]
    assert set(info["split"]["train"]).isdisjoint(info["split"]["val"])
    assert info["device"]["kind"] in ("cpu", "gpu") and info["versions"]["keras"] == keras.__version__
    assert info["config"]["train"]["steps_per_epoch"] == 8
    assert run.history["epoch"].tolist() == [1, 2]
    assert {"loss", "val_loss", "iou", "dice_coef", "pixel_accuracy", "lr"} <= set(run.history)
    assert run.steps["step"].tolist() == list(range(16))
    assert run.steps["epoch"].tolist() == [1] * 8 + [2] * 8
    assert run.steps["batch"].tolist() == list(range(8)) * 2
    for col in ("loss", "grad_norm", "update_ratio", "pinned_frac", "pos_frac", "mask_frac", "logit_spread"):
        assert np.isfinite(run.steps[col]).all(), col
    # lr_schedule is by optimizer iteration: 1e-3 for steps 0..9, then 5e-4
    assert np.allclose(run.steps["lr"], [1e-3] * 10 + [5e-4] * 6)
    names = {p.name for p in (result.run_dir / "checkpoints").iterdir()}
    assert {"epoch-0001.keras", "epoch-0002.keras", "last.keras", "best.keras"} <= names
    probe = json.loads((result.run_dir / "predictions" / "probe.json").read_text())
    assert len(probe["tiles"]) == 2
    probs = tifffile.imread(result.run_dir / "predictions" / "epoch-0002.tif")
    assert probs.shape == (2, 96, 96) and probs.dtype == np.float32
    assert 0.0 <= probs.min() and probs.max() <= 1.0
    assert list((result.run_dir / "tensorboard").rglob("events.out.tfevents*"))


def test_steps_record_the_batch_loss_not_the_running_mean(finished_run):
    result, _, _ = finished_run
    run = read_run(result.run_dir)
    first_epoch = run.steps["loss"][:8]
    # the epoch's history loss is the mean of its batch losses (Keras' running mean at the end)
    assert run.history["loss"][0] == pytest.approx(first_epoch.mean(), rel=1e-4)
    assert first_epoch.std() > 0


def test_listener_gets_frozen_events_and_user_callbacks_run(finished_run):
    _, seen, batches = finished_run
    types = [e.type for e in seen]
    assert types[0] == "run_started" and types[-1] == "run_finished"
    assert types.count("epoch_end") == 2
    rows = [r for e in seen if isinstance(e, StepsLogged) for r in e.rows]
    assert [r["step"] for r in rows] == list(range(16))
    assert isinstance(seen[-1], RunFinished) and seen[-1].status == "completed"
    with pytest.raises(AttributeError):
        seen[-1].status = "x"  # frozen
    assert batches == list(range(8)) * 2


def test_checkpoint_opens_in_plain_keras(finished_run):
    result, _, _ = finished_run
    path = result.run_dir / "checkpoints" / "best.keras"
    code = (
        "import sys, keras, numpy as np\n"
        f"m = keras.saving.load_model({str(path)!r}, compile=False)\n"
        "assert 'core' not in sys.modules, 'tilewatch was imported'\n"
        "print(m.name, m.output_shape)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd="/", timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "unet" in out.stdout


def test_stop_pause_and_resume_from_another_thread(data, tmp_path):
    cfg = load_config(overrides={**TINY, "train.epochs": 50, "train.steps_per_epoch": 4})
    steps: list[int] = []
    trainer = Trainer(cfg, data_dir=data, run_dir=tmp_path / "r",
                      listener=lambda e: steps.extend(r["step"] for r in getattr(e, "rows", ())))
    box = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", trainer.run()))
    thread.start()
    deadline = time.time() + 120
    while len(steps) < 8 and time.time() < deadline:
        time.sleep(0.05)
    trainer.pause()
    time.sleep(1.0)
    frozen = len(steps)
    time.sleep(1.5)
    assert len(steps) <= frozen + 4, "a paused run kept training"
    assert trainer.paused
    trainer.resume()
    time.sleep(0.5)
    trainer.stop()
    thread.join(120)
    assert not thread.is_alive()
    result = box["result"]
    assert result.status == "stopped" and result.epochs_done < 50
    assert read_run(result.run_dir).events_of("stopped")


def test_starting_from_a_checkpoint_records_the_parent(finished_run, data, tmp_path):
    result, _, _ = finished_run
    ckpt = result.run_dir / "checkpoints" / "epoch-0001.keras"
    cfg = load_config(overrides={**TINY, "train.epochs": 1, "train.steps_per_epoch": 2})
    parent = {"run": str(result.run_dir), "checkpoint": str(ckpt)}
    child = Trainer(cfg, data_dir=data, run_dir=tmp_path / "child", init_checkpoint=ckpt, parent=parent).run()
    info = read_run(child.run_dir).info
    assert info["parent"] == parent and child.status == "completed"


def test_a_failure_leaves_a_readable_failed_run(data, tmp_path):
    class Boom(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if batch == 2:
                raise RuntimeError("boom at batch 2")

    cfg = load_config(overrides={**TINY, "train.epochs": 1})
    with pytest.raises(RuntimeError, match="boom"):
        Trainer(cfg, data_dir=data, run_dir=tmp_path / "f", callbacks=[Boom()]).run()
    run = read_run(tmp_path / "f")
    assert run.status == "failed"
    assert "boom at batch 2" in run.events_of("error")[0].message
    assert run.events[-1].type == "run_finished"


def test_checkpoint_retention_keeps_the_newest_epochs(data, tmp_path):
    cfg = load_config(overrides={**TINY, "train.epochs": 3, "train.steps_per_epoch": 2, "train.keep_checkpoints": 1})
    result = Trainer(cfg, data_dir=data, run_dir=tmp_path / "k").run()
    names = sorted(p.name for p in (result.run_dir / "checkpoints").glob("*.keras"))
    assert names == ["best.keras", "epoch-0003.keras", "last.keras"]
