"""Fabricated run directories, written with core.runstore.RunWriter and the real
event dataclasses: the views are tested against them without TensorFlow."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import tifffile

from core.events import EpochEnd, RunFinished, RunStarted, Saturation, WarningEvent
from core.runstore import RunWriter

SPE = 10  # steps per epoch


def fabricate_run(path: Path, *, collapse: bool, epochs: int = 4, size: int = 48) -> Path:
    rng = np.random.default_rng(0)
    w = RunWriter(path)
    data = path.parent / f"{path.name}-data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir(parents=True)
    images, masks = [], []
    for i in range(2):
        img = rng.integers(0, 1000, (size, size, 6), dtype=np.uint16)
        mask = np.zeros((size, size), np.uint8)
        mask[8:20, 8:20] = 1
        tifffile.imwrite(data / "images" / f"t{i}.tif", img)
        tifffile.imwrite(data / "masks" / f"t{i}.tif", mask)
        images.append(str(data / "images" / f"t{i}.tif"))
        masks.append(str(data / "masks" / f"t{i}.tif"))
    cfg = {"train": {"epochs": epochs, "steps_per_epoch": SPE}}
    w.create({"config": {}, "status": "running", "data_dir": str(data), "saturation": None, "parent": None})
    t0 = time.time() - 100
    w.append_event(RunStarted(step=0, epoch=1, time=t0, config=cfg, device={"kind": "cpu", "name": "CPU"}))
    (path / "predictions" / "probe.json").write_text(json.dumps({"tiles": ["t0", "t1"], "images": images, "masks": masks}))
    onset = 2 * SPE + 3  # step 23, epoch 3
    rows = []
    for step in range(epochs * SPE):
        epoch = step // SPE + 1
        dead = collapse and step >= onset
        rows.append({
            "step": step, "epoch": epoch, "batch": step % SPE, "time": t0 + step,
            "loss": 1.0 if dead else float(0.9 * np.exp(-step / 20) + 0.05 * rng.random()),
            "lr": 0.01, "grad_norm": 0.0 if dead else 0.5, "update_ratio": 0.0 if dead else 1e-3,
            "pos_frac": 0.0 if dead else 0.2, "mask_frac": 0.2, "pinned_frac": 1.0 if dead else 0.05,
            "logit_spread": 0.0 if dead else 2.0, "logit_mean": -60.0 if dead else -1.0,
        })
    w.append_steps(rows)
    w.append_event(WarningEvent(step=onset - 2, epoch=3, kind="update_spike", signals={"update_ratio": 0.4}, message="update ratio spiked"))
    for epoch in range(1, epochs + 1):
        end = epoch * SPE - 1
        dead = collapse and end >= onset
        w.append_history({"epoch": epoch, "loss": 1.0 if dead else 0.5 / epoch, "val_loss": 1.0 if dead else 0.6 / epoch, "lr": 0.01})
        w.append_event(EpochEnd(step=end, epoch=epoch, metrics={"loss": 0.5, "val_loss": 0.6}))
        prob = np.zeros((2, size, size), np.float32) if dead else np.full((2, size, size), 0.1, np.float32)
        if not dead:
            prob[:, 8:20, 8:20] = 0.9
        tifffile.imwrite(path / "predictions" / f"epoch-{epoch:04d}.tif", prob)
        (path / "checkpoints" / f"epoch-{epoch:04d}.keras").write_bytes(b"fake")
    if collapse:
        detect = onset + 3
        tifffile.imwrite(path / "predictions" / f"step-{detect:07d}.tif", np.zeros((2, size, size), np.float32))
        remedies = (
            {"rank": 1, "title": "Lower the learning rate", "why": "the update blew the logits up", "changes": {"train.learning_rate": 0.001}},
            {"rank": 2, "title": "Use a smooth of 1", "why": "smooth 1e-12 locks the loss at 1", "changes": {"train.jaccard_smooth": 1.0}},
        )
        w.append_event(Saturation(step=detect, epoch=3, onset_step=onset, kind="all_background", signals={"pinned_frac": 1.0},
                                  diagnosis="The outputs are pinned at 0 for every pixel.", remedies=remedies))
        w.update(saturation={"epoch": 3, "step": detect, "onset_step": onset})
    status = "collapsed" if collapse else "completed"
    w.append_event(RunFinished(step=epochs * SPE - 1, epoch=epochs, status=status))
    w.update(status=status)
    return path
