"""Benchmark the training engine (issues 3 and 4): overhead against bare Keras.

Run: ``.venv/bin/python benchmarks/training.py`` (prints a markdown table).
``main()`` returns the figures for ``benchmarks/run_all.py``.

All figures come from one process, one configuration after another:

1. Median training step time of :class:`core.Trainer` (TIFF pipeline, in-step
   signals, records and probes included) against a bare ``keras.Model.fit`` of
   the same :func:`core.build_unet` model, loss and metrics on in-memory
   arrays. Both are timed the same way: wall time between consecutive batch
   starts within an epoch (the Trainer's steps.csv ``time`` column; a
   batch-begin callback for bare fit), first epoch dropped as warm-up.
   Goal: at most 1.05x. Configurations: depth 3 / 16 filters / batch norm /
   128² patches / batch 4 / Adam / BCE, and the seed preset (depth 4 / 32
   filters / 256² / SGD + Nesterov / Jaccard).
2. Time spent writing one epoch's records, probes and checkpoints, as a share
   of the epoch (run.json ``timing.epoch_records_s``).
3. Monitor overhead: median step time with ``monitor.enabled`` on, divided by
   the same with it off. Goal: at most 1.02x.

The small configuration runs bare / monitor on / monitor off three times,
alternating, and reports each one's median (the seed preset once: its steps
take seconds on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SMALL = {
    "data.patch_size": 128,
    "data.val_fraction": 0.25,
    "model.depth": 3,
    "model.base_filters": 16,
    "model.batch_norm": True,
    "train.batch_size": 4,
    "train.optimizer": "adam",
    "train.loss": "bce",
    "train.patience": 0,
    "monitor.probe_tiles": 4,
}


def _step_median(times: list[float], epochs: list[int]) -> float:
    """Median gap between consecutive batch starts of the same epoch, first epoch dropped."""
    gaps = [
        b - a
        for (a, ea), (b, eb) in zip(zip(times, epochs), zip(times[1:], epochs[1:]))
        if ea == eb and ea != epochs[0]
    ]
    return statistics.median(gaps)


def _bare_fit(cfg, data_dir: Path, *, epochs: int, steps: int) -> float:
    import keras
    import numpy as np

    from core.losses import make_loss, make_metrics
    from core.model import build_unet
    from core.pipeline import compute_normalization, load_tile
    from core.tiles import scan_dataset

    info = scan_dataset(data_dir)
    norm = compute_normalization(info.tiles, method="percentile", seed=0)
    p = cfg.data.patch_size
    xs, ys = [], []
    rng = np.random.default_rng(0)
    per_tile = -(-steps * cfg.train.batch_size // len(info.tiles))  # enough for one epoch
    for tile in info.tiles:
        image, mask = load_tile(tile, normalization=norm, kind=info.mask_kind, num_outputs=info.num_outputs)
        for _ in range(per_tile):
            r, c = rng.integers(0, tile.height - p + 1), rng.integers(0, tile.width - p + 1)
            xs.append(image[r : r + p, c : c + p])
            ys.append(mask[r : r + p, c : c + p])
    x, y = np.stack(xs), np.stack(ys)
    keras.utils.set_random_seed(0)
    model = build_unet((None, None, info.channels), info.num_outputs, depth=cfg.model.depth,
                       base_filters=cfg.model.base_filters, batch_norm=cfg.model.batch_norm)
    if cfg.train.optimizer == "sgd":
        opt = keras.optimizers.SGD(cfg.train.learning_rate, momentum=cfg.train.momentum, nesterov=cfg.train.nesterov)
    else:
        opt = keras.optimizers.Adam(cfg.train.learning_rate)
    model.compile(optimizer=opt, loss=make_loss(cfg.train.loss, activation="sigmoid", smooth=cfg.train.jaccard_smooth),
                  metrics=make_metrics(activation="sigmoid", num_outputs=1))
    times: list[float] = []
    epochs_seen: list[int] = []

    class Clock(keras.callbacks.Callback):
        epoch = 0

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch = epoch

        def on_train_batch_begin(self, batch, logs=None):
            times.append(time.time())
            epochs_seen.append(self.epoch)

    model.fit(x, y, batch_size=cfg.train.batch_size, epochs=epochs, steps_per_epoch=steps,
              callbacks=[Clock()], verbose=0)
    return _step_median(times, epochs_seen)


def _trainer(cfg, data_dir: Path, run_dir: Path) -> tuple[float, float, float]:
    """Return (median step s, mean epoch-record s, mean epoch s) of a Trainer run."""
    from core import Trainer, read_run

    Trainer(cfg, data_dir=data_dir, run_dir=run_dir).run()
    run = read_run(run_dir)
    times = run.steps["time"].tolist()
    epochs = run.steps["epoch"].astype(int).tolist()
    step = _step_median(times, epochs)
    records = run.info.get("timing", {}).get("epoch_records_s", [])[1:]
    epoch_s = [
        max(t for t, e in zip(times, epochs) if e == k) - min(t for t, e in zip(times, epochs) if e == k)
        for k in sorted(set(epochs))[1:]
    ]
    return step, statistics.mean(records), statistics.mean(epoch_s) + statistics.mean(records)


def main(*, quick: bool = False, seed_repeats: int = 1, only: str | None = None, verbose: bool = True) -> dict[str, Any]:
    """Run the benchmark; return its figures and print a markdown table."""
    from core import load_config
    from core.config import preset_path
    from core.synthetic import make_dataset

    base = Path(tempfile.mkdtemp(prefix="tilewatch-train-bench-"))
    data = make_dataset(base / "data", tiles=12, size=650, seed=1)
    epochs, steps = (3, 12) if quick else (3, 30)
    seed_epochs, seed_steps = (2, 6) if quick else (3, 12)
    results: dict[str, Any] = {"configs": []}
    cases = [
        ("depth 3, 16 filters, 128², Adam, BCE", load_config(overrides={**SMALL, "train.epochs": epochs, "train.steps_per_epoch": steps}), epochs, steps),
        ("seed preset: depth 4, 32 filters, 256², SGD, Jaccard",
         load_config(preset_path("seed"), overrides={"train.epochs": seed_epochs, "train.steps_per_epoch": seed_steps, "train.patience": 0, "monitor.probe_tiles": 4}),
         seed_epochs, seed_steps),
    ]
    plan = list(zip(cases, (1 if quick else 3, seed_repeats)))
    if only == "small":
        plan = plan[:1]
    elif only == "seed":
        plan = plan[1:]
    for (label, cfg, n_epochs, n_steps), repeats in plan:
        # Alternate the three set-ups and keep each one's median over the repeats,
        # so that load from other jobs drifting over time hits all three alike.
        bares, ons, offs, recs, epochs_s = [], [], [], [], []
        for r in range(repeats):
            bares.append(_bare_fit(cfg, data, epochs=n_epochs, steps=n_steps))
            on, rec, epoch_s = _trainer(cfg, data, base / f"run-{len(results['configs'])}-{r}-on")
            ons.append(on)
            recs.append(rec)
            epochs_s.append(epoch_s)
            offs.append(_trainer(cfg.replace({"monitor.enabled": False}), data,
                                 base / f"run-{len(results['configs'])}-{r}-off")[0])
        bare, on, off = statistics.median(bares), statistics.median(ons), statistics.median(offs)
        rec, epoch_s = statistics.median(recs), statistics.median(epochs_s)
        results["configs"].append({
            "repeats": repeats,
            "config": label,
            "bare_step_s": bare,
            "trainer_step_s": on,
            "trainer_ratio": on / bare,
            "monitor_off_step_s": off,
            "monitor_ratio": on / off,
            "records_s": rec,
            "records_share": rec / epoch_s,
            "patches_per_s_consumed": cfg.train.batch_size / on,
        })
    if verbose:
        print("| configuration | bare fit step | Trainer step | ratio (goal ≤ 1.05) | monitor off | monitor on/off (goal ≤ 1.02) | records+probes per epoch | share of epoch | patches/s consumed |")
        print("|---|---|---|---|---|---|---|---|---|")
        for r in results["configs"]:
            print(f"| {r['config']} | {r['bare_step_s'] * 1e3:.1f} ms | {r['trainer_step_s'] * 1e3:.1f} ms | "
                  f"{r['trainer_ratio']:.3f} | {r['monitor_off_step_s'] * 1e3:.1f} ms | {r['monitor_ratio']:.3f} | "
                  f"{r['records_s']:.3f} s | {r['records_share'] * 100:.1f} % | {r['patches_per_s_consumed']:.1f} |")
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (a smoke run, not for the record)")
    parser.add_argument("--seed-repeats", type=int, default=1, help="alternated repeats of the seed-preset case")
    parser.add_argument("--only", choices=("small", "seed"), help="run one configuration")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = main(quick=args.quick, seed_repeats=args.seed_repeats, only=args.only)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
