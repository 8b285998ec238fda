"""``python -m core`` / ``tilewatch-core``: the command line.

Verbs: ``synth``, ``check``, ``train`` (and ``train --resume``), ``inspect``,
``predict``. Exit codes: 0 finished (any status but failed; ``check``: data
usable), 2 bad input or config (a clear message, no traceback), 1 internal
error. Heavy imports (TensorFlow) happen inside the verbs that need them.
This module never imports Qt.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from core.config import ConfigError, load_config, parse_override
from core.runstore import RunError, read_run
from core.tiles import DatasetError

__all__ = ["main"]

EXIT_OK, EXIT_INTERNAL, EXIT_BAD_INPUT = 0, 1, 2
_BAD_INPUT = (ConfigError, DatasetError, RunError)


class _UsageError(ValueError):
    """A command-line value is wrong (exit 2)."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tilewatch-core",
        description="Tilewatch: train U-Nets on multi-band TIFF tiles and catch output saturation.",
    )
    sub = p.add_subparsers(dest="verb", required=True, metavar="VERB")

    s = sub.add_parser("synth", help="write a synthetic tile dataset")
    s.add_argument("out", type=Path)
    s.add_argument("--tiles", type=int, default=12)
    s.add_argument("--size", type=int, default=256)
    s.add_argument("--channels", type=int, default=6)
    s.add_argument("--classes", type=int, default=1, help="1 = binary masks; K > 1 = labels 0..K-1")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--empty-fraction", type=float, default=0.0, help="share of tiles with an empty mask")
    s.add_argument("--planar", choices=("no", "yes", "mixed"), default="no", help="store images (C, H, W)")
    s.add_argument("--compression", choices=("none", "deflate", "lzw", "zstd", "mixed"), default="none")
    s.add_argument("--dtype", choices=("uint8", "uint16", "int16", "float32"), default="uint16")
    s.add_argument("--mask-values", choices=("01", "0255"), default="01")
    s.add_argument("--multilabel", action="store_true", help="K-channel {0,1} masks instead of labels")

    c = sub.add_parser("check", help="describe a tile folder and list every problem")
    c.add_argument("data", type=Path)
    c.add_argument("--patch-size", type=int, default=None, help="warn about tiles smaller than this")

    t = sub.add_parser("train", help="train a U-Net (or --resume a run)")
    t.add_argument("--data", type=Path)
    t.add_argument("--config", type=Path)
    t.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE")
    t.add_argument("--run-dir", type=Path)
    t.add_argument("--resume", type=Path, metavar="RUN")
    t.add_argument("--quiet", action="store_true")

    i = sub.add_parser("inspect", help="summarise a run")
    i.add_argument("run", type=Path)

    r = sub.add_parser("predict", help="predict full tiles with a run's checkpoint")
    r.add_argument("--run", type=Path, required=True)
    r.add_argument("--epoch", type=int)
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = _parser().parse_args(argv)
    verbs = {"synth": _synth, "check": _check, "train": _train, "inspect": _inspect, "predict": _predict}
    try:
        return verbs[args.verb](args)
    except _BAD_INPUT + (_UsageError,) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERNAL


# -- synth / check -----------------------------------------------------------
def _synth(args: argparse.Namespace) -> int:
    from core.synthetic import make_dataset

    planar: Any = {"no": False, "yes": True, "mixed": "mixed"}[args.planar]
    try:
        out = make_dataset(
            args.out,
            tiles=args.tiles,
            size=args.size,
            channels=args.channels,
            classes=args.classes,
            seed=args.seed,
            empty_fraction=args.empty_fraction,
            planar=planar,
            compression=args.compression,
            dtype=args.dtype,
            mask_values=args.mask_values,
            multilabel=args.multilabel,
        )
    except ValueError as exc:
        raise _UsageError(f"synth: {exc}") from None
    print(f"wrote {args.tiles} tiles of {args.size}x{args.size}x{args.channels} to {out}")
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    from core.tiles import scan_dataset

    try:
        info = scan_dataset(args.data, patch_size=args.patch_size)
    except DatasetError as exc:
        print(f"{args.data}: NOT usable\n{exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(info.format())
    print("\nusable: yes")
    return EXIT_OK


# -- train -------------------------------------------------------------------
def _train(args: argparse.Namespace) -> int:
    from core.trainer import Trainer

    if args.resume is not None:
        if args.data or args.config or args.set or args.run_dir:
            raise _UsageError("train --resume RUN takes the data, config and split from the run; drop the other options")
        trainer = Trainer.from_run(args.resume)
        run_dir = args.resume
        cfg = trainer.cfg
    else:
        if args.data is None:
            raise _UsageError("train needs --data DIR (or --resume RUN)")
        overrides = dict(parse_override(s) for s in args.set)
        cfg = load_config(args.config, overrides=overrides)
        run_dir = args.run_dir or _default_run_dir()
        trainer = Trainer(cfg, data_dir=args.data, run_dir=run_dir)
    progress = _Progress(sys.stdout, epochs=cfg.train.epochs, quiet=args.quiet, trainer=trainer)
    trainer.listener = progress
    previous = signal.getsignal(signal.SIGINT)

    def _interrupt(signum: int, frame: Any) -> None:
        print("\nstopping at the next batch (Ctrl-C again to abort)…", file=sys.stderr)
        trainer.stop()
        signal.signal(signal.SIGINT, previous)

    signal.signal(signal.SIGINT, _interrupt)
    try:
        result = trainer.run()
    except _BAD_INPUT:
        raise
    except Exception as exc:  # noqa: BLE001 - reported, run left as failed
        progress.close()
        print(f"training failed: {type(exc).__name__}: {exc}\nrun: {run_dir}", file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        signal.signal(signal.SIGINT, previous)
    progress.close()
    best = f"{result.best_val_loss:.4f}" if result.best_val_loss is not None else "n/a"
    print(f"run {result.status}: {result.epochs_done} epochs, {result.steps} steps, best val_loss {best}")
    print(f"run directory: {result.run_dir}")
    if result.saturation:
        s = result.saturation
        print(f"outputs saturated ({s['kind']}) at step {s['onset_step']}, epoch {s['epoch']}: see `tilewatch-core inspect {result.run_dir}`")
    return EXIT_OK if result.status != "failed" else EXIT_INTERNAL


def _default_run_dir() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / stamp


class _Progress:
    """Listener that draws a progress bar on a terminal and plain lines otherwise."""

    def __init__(self, stream: TextIO, *, epochs: int, quiet: bool, trainer: Any) -> None:
        self.stream = stream
        self.epochs = epochs
        self.quiet = quiet
        self.trainer = trainer
        self.tty = stream.isatty()
        self.epoch_start = time.monotonic()
        self.step_seconds = math.nan
        self._mark: tuple[float, int] | None = None
        self.loss = math.nan
        self.val_loss = math.nan
        self._drawn = False

    def __call__(self, event: Any) -> None:
        kind = event.type
        if kind == "steps":
            for row in event.rows:
                loss = row.get("loss", math.nan)
                self.loss = loss if math.isnan(self.loss) else 0.9 * self.loss + 0.1 * loss
            last = event.rows[-1]
            now, batch = time.monotonic(), int(last["batch"])
            if self._mark is None or batch <= self._mark[1]:
                self._mark = (now, batch)  # first report of an epoch: tracing is behind us
            elif now > self._mark[0]:
                self.step_seconds = (now - self._mark[0]) / (batch - self._mark[1])
            if self.tty and not self.quiet:
                self._draw(int(last["epoch"]), int(last["batch"]) + 1)
        elif kind == "epoch_end":
            m = event.metrics
            self.val_loss = m.get("val_loss", math.nan)
            took = time.monotonic() - self.epoch_start
            self.epoch_start = time.monotonic()
            extras = " - ".join(f"{k}: {v:.4f}" for k, v in m.items() if k not in ("epoch",) and isinstance(v, float))
            self._line(f"Epoch {event.epoch}/{self.epochs} - {took:.1f}s - {extras}")
        elif kind == "run_started":
            dev = event.device
            where = dev.get("name", "?") if dev.get("kind") == "gpu" else f"CPU (no GPU: {dev.get('reason', '')})"
            self._line(f"training on {where}")
        elif kind == "warning":
            if not self.quiet or kind.startswith("preflight"):
                self._line(f"warning [{event.kind}] step {event.step}: {event.message}")
        elif kind == "saturation":
            self._line(
                f"SATURATION ({event.kind}) onset at step {event.onset_step}, epoch {event.epoch}, "
                f"confirmed at step {event.step}\n  {event.diagnosis}"
            )
        elif kind == "rollback":
            self._line(f"rollback to step {event.to_step}; learning rate now {event.new_learning_rate:.3g}")
        elif kind == "error":
            self._line(f"error: {event.message}")

    def _draw(self, epoch: int, batch: int) -> None:
        total = self.trainer.steps_per_epoch or batch
        frac = min(1.0, batch / max(total, 1))
        width = 24
        bar = "=" * int(frac * width) + ">" + "." * (width - int(frac * width))
        remaining = max(total - batch, 0) + total * max(self.epochs - epoch, 0)
        eta = _duration(self.step_seconds * remaining) if math.isfinite(self.step_seconds) else "?"
        val = f" - val_loss: {self.val_loss:.4f}" if not math.isnan(self.val_loss) else ""
        text = f"\rEpoch {epoch}/{self.epochs} [{bar[:width]}] {batch}/{total} - ETA {eta} - loss: {self.loss:.4f}{val}"
        self.stream.write(text)
        self.stream.flush()
        self._drawn = True

    def _line(self, text: str) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self._drawn = False
        self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self._drawn = False


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
    return f"{seconds // 60}:{seconds % 60:02d}"


# -- inspect / predict -------------------------------------------------------
def _inspect(args: argparse.Namespace) -> int:
    run = read_run(args.run)
    info = run.info
    hist = run.history
    epochs = len(hist.get("epoch", []))
    lines = [f"run:      {run.path}", f"status:   {run.status}"]
    cfg = info.get("config", {})
    tr = cfg.get("train", {})
    lines.append(
        f"config:   {tr.get('loss')} (smooth {tr.get('jaccard_smooth')}), {tr.get('optimizer')} lr {tr.get('learning_rate')}, "
        f"batch {tr.get('batch_size')}, monitor policy {cfg.get('monitor', {}).get('policy')}"
    )
    dev = info.get("device", {})
    lines.append(f"device:   {dev.get('name', '?')}" + (f" ({dev.get('reason')})" if dev.get("reason") else ""))
    steps = run.steps.get("step")
    lines.append(f"progress: {epochs} epochs, {0 if steps is None else len(steps)} steps")
    vals = hist.get("val_loss")
    if vals is not None and len(vals) and not all(math.isnan(v) for v in vals):
        best_i = int(min(range(len(vals)), key=lambda i: vals[i] if not math.isnan(vals[i]) else math.inf))
        lines.append(f"best val: {vals[best_i]:.4f} at epoch {int(hist['epoch'][best_i])}")
    if info.get("parent"):
        lines.append(f"parent:   {info['parent'].get('run')} (checkpoint {info['parent'].get('checkpoint')})")
    sats = run.events_of("saturation")
    if not sats:
        lines.append("saturation: none detected")
    for ev in sats:
        lines.append(
            f"saturation: {ev.kind} — onset at step {ev.onset_step}, epoch {ev.epoch}; confirmed at step {ev.step}"
        )
        lines.append(f"  diagnosis: {ev.diagnosis}")
        for r in ev.remedies:
            changes = ", ".join(f"{k} = {v!r}" for k, v in r.get("changes", {}).items())
            lines.append(f"  {r.get('rank', '-')}. {r.get('title', '')}: {changes}")
    for ev in run.events_of("rollback"):
        lines.append(f"rollback: at step {ev.step} back to step {ev.to_step}, learning rate {ev.new_learning_rate:.3g}")
    warnings = run.events_of("warning")
    lines.append(f"warnings: {len(warnings)}")
    for ev in warnings[:20]:
        lines.append(f"  step {ev.step} (epoch {ev.epoch}) [{ev.kind}] {ev.message}")
    if len(warnings) > 20:
        lines.append(f"  … and {len(warnings) - 20} more (events.jsonl)")
    print("\n".join(lines))
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    from core.predict import checkpoint_for, predict_tiles

    checkpoint_for(args.run, epoch=args.epoch)  # bad run / epoch: exit 2 before any import cost
    summary = predict_tiles(
        args.run,
        data_dir=args.data,
        out_dir=args.out,
        epoch=args.epoch,
        progress=lambda i, n, name: print(f"[{i}/{n}] {name}", flush=True),
    )
    print(f"wrote {len(summary.outputs)} predictions to {args.out} (checkpoint {summary.checkpoint.name})")
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
