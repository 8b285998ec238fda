"""Detection benchmark (issue 4, item 6): does the monitor see each collapse, and only those?

Runs tiny U-Nets (depth 2, 8 filters, 64x64 patches) on the project's synthetic
data through the real :class:`core.Trainer` with the monitor on (policy
``mark``), one run per scenario:

- ``seed_spike_background``: the seed's set-up (SGD + Nesterov, Jaccard with
  smooth 1e-12, no batch norm) with a one-step learning-rate spike mid-run;
- ``spike_foreground``: the same, forced to all-foreground;
- ``softmax_constant_class``: a 3-class softmax forced to one class;
- ``healthy_adam``, ``healthy_sgd``, ``empty_masks_60``, ``tiny_lr``: must stay silent.

A forced scenario first tries a learning-rate spike; if the run does not end
collapsed to the expected kind, it is rerun with a deterministic fallback, a
callback that sets the ``logits`` layer's bias to -50/+50 at the injection
step; the ``method`` column says which one the row used.

The truth is measured, not taken from the detector: a run *collapsed* when its
last saved probe predictions (``predictions/epoch-NNNN.tif``) are pinned at one
end (or one class) for >= 99 % of pixels while the probe masks disagree; the
true onset is the first step at or after the injection whose steps.csv row has
>= 99 % of pixel-outputs pinned at that end. The detector's verdict is read from
``events.jsonl`` (the ``saturation`` events the monitor wrote).

Beside it: the steps EarlyStopping(patience=10) would have needed after the
onset (estimated from history.csv: ``(best epoch + 10) x steps_per_epoch -
onset``), and whether TerminateOnNaN would ever fire (any non-finite loss).

Run: ``python -m benchmarks.detection`` (a few minutes on 2 CPU cores). It
prints a markdown table; :func:`main` returns the results.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

STEPS_PER_EPOCH = 20
EPOCHS = 4
INJECT_STEP = 30  # epoch 2, batch 10
TINY = {
    "data.patch_size": 64,
    "data.augment": "flips",
    "model.depth": 2,
    "model.base_filters": 8,
    "train.batch_size": 4,
    "train.epochs": EPOCHS,
    "train.steps_per_epoch": STEPS_PER_EPOCH,
    "train.patience": 0,
    "monitor.policy": "mark",
    "monitor.probe_tiles": 2,
}
PIN = 0.99


@dataclass(frozen=True)
class Scenario:
    """One benchmark run: config overrides, data options, what should happen."""

    name: str
    overrides: Mapping[str, Any]
    data: Mapping[str, Any] = field(default_factory=dict)
    expect: str | None = None  # the collapse kind, or None for a healthy run
    spike_lrs: tuple[float, ...] = ()  # one-step lr spikes at INJECT_STEP, tried in order
    bias: float = 0.0  # the fallback: logits bias at INJECT_STEP (softmax: class 1 gets +bias)


SEED = {
    "train.loss": "jaccard", "train.jaccard_smooth": 1e-12, "train.optimizer": "sgd",
    "train.learning_rate": 0.01, "train.momentum": 0.9, "train.nesterov": True,
    "model.batch_norm": False, "train.clipnorm": 0.0,
}
ADAM = {"train.loss": "bce+jaccard", "train.optimizer": "adam", "train.learning_rate": 3e-3,
        "model.batch_norm": True}

SCENARIOS: tuple[Scenario, ...] = (
    Scenario("seed_spike_background", {**SEED, "data.augment": "dihedral"}, data={"seed": 0},
             expect="all_background",
             spike_lrs=(2.0, 0.5, 1.0, 5.0), bias=-50.0),
    Scenario("spike_foreground", SEED, expect="all_foreground", spike_lrs=(20.0,),
             bias=50.0),
    Scenario("softmax_constant_class", SEED, data={"classes": 3}, expect="constant_class",
             spike_lrs=(2.0,), bias=50.0),
    Scenario("healthy_adam", ADAM),
    Scenario("healthy_sgd", {**ADAM, "train.optimizer": "sgd", "train.learning_rate": 0.01,
                             "train.clipnorm": 1.0}),
    Scenario("empty_masks_60", ADAM, data={"empty_fraction": 0.6}),
    Scenario("tiny_lr", {**ADAM, "train.learning_rate": 1e-6}),
)


@dataclass
class Result:
    """One row of the table."""

    scenario: str
    method: str
    truth: str  # the collapse kind, or "healthy"
    truth_onset: int | None
    verdict: str  # the detected kind, or "silent"
    onset: int | None
    detected_at: int | None
    onset_error: int | None
    delay: int | None
    false_alarms: int
    first_warning: str
    warnings: int
    early_stopping_steps: int | None
    terminate_on_nan: str
    seconds: float

    @property
    def hit(self) -> bool:
        return self.truth != "healthy" and self.verdict == self.truth


def _find_layer(model: Any, name: str) -> Any:
    try:
        return model.get_layer(name)
    except ValueError:
        for layer in getattr(model, "layers", []):
            if hasattr(layer, "layers"):
                try:
                    return _find_layer(layer, name)
                except ValueError:
                    continue
    raise ValueError(f"no layer {name!r}")


def _bias_callback(step: int, bias: float) -> Any:
    import keras

    class SetLogitsBias(keras.callbacks.Callback):
        """Force the collapse: set the ``logits`` bias at global step ``step``."""

        def on_train_begin(self, logs: Any = None) -> None:
            self.seen = 0

        def on_train_batch_begin(self, batch: int, logs: Any = None) -> None:
            if self.seen == step:
                layer = _find_layer(self.model, "logits")
                values = np.full(layer.bias.shape, bias, dtype="float32")
                if values.size > 1:  # softmax: class 1 wins, the others lose
                    values[:] = -abs(bias)
                    values[1] = abs(bias)
                layer.bias.assign(values)
            self.seen += 1

    return SetLogitsBias()


def _read_steps(run: Path) -> list[dict[str, float]]:
    with open(run / "steps.csv", newline="", encoding="utf-8") as fh:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
                for r in csv.DictReader(fh)]


def _events(run: Path) -> list[dict[str, Any]]:
    lines = (run / "events.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _probe_truth(run: Path, *, softmax: bool) -> str:
    """'healthy' or the collapse kind, from the last saved probe predictions and masks."""
    import tifffile

    preds = sorted((run / "predictions").glob("epoch-*.tif"))
    probe = json.loads((run / "predictions" / "probe.json").read_text(encoding="utf-8"))
    probs = np.asarray(tifffile.imread(preds[-1]), dtype="float64")
    masks = np.stack([np.asarray(tifffile.imread(m)) for m in probe["masks"]])
    if softmax:
        labels = probs.argmax(-1)
        top = probs.max(-1)
        counts = np.bincount(labels.ravel(), minlength=probs.shape[-1])
        constant = counts.max() / labels.size >= PIN and (top > 1 - 1e-3).mean() >= PIN
        wrong = (masks != counts.argmax()).mean() >= 0.005
        return "constant_class" if constant and wrong else "healthy"
    fg = masks > 0
    if (probs < 1e-3).mean() >= PIN and fg.mean() >= 0.005:
        return "all_background"
    if (probs > 1 - 1e-3).mean() >= PIN and (~fg).mean() >= 0.005:
        return "all_foreground"
    return "healthy"


def _truth_onset(rows: Sequence[Mapping[str, float]], kind: str) -> int | None:
    key = {"all_background": "pinned_low", "all_foreground": "pinned_high"}.get(kind)
    for r in rows:
        if r["step"] < INJECT_STEP:
            continue
        pinned = r.get(key, math.nan) if key else min(r.get("pinned_frac", math.nan),
                                                       r.get("dominant_frac", math.nan))
        if pinned >= PIN:
            return int(r["step"])
    return None


def _early_stopping_steps(run: Path, onset: int) -> int:
    with open(run / "history.csv", newline="", encoding="utf-8") as fh:
        val = [float(r["val_loss"]) for r in csv.DictReader(fh)]
    best_epoch = int(np.argmin(val)) + 1
    return (best_epoch + 10) * STEPS_PER_EPOCH - onset


def _run(sc: Scenario, root: Path, *, method: str, spike_lr: float = 0.0) -> Result:
    from core import Trainer, load_config
    from core.synthetic import make_dataset

    data = root / f"data-{sc.name}"
    if not data.exists():
        make_dataset(data, tiles=12, size=96, channels=6, **{"seed": 1, **dict(sc.data)})
    overrides: dict[str, Any] = {**TINY, **sc.overrides}
    callbacks = []
    if method.startswith("lr spike"):
        base = float(overrides["train.learning_rate"])
        overrides["train.lr_schedule"] = [[INJECT_STEP, spike_lr], [INJECT_STEP + 1, base]]
    elif method.startswith("bias"):
        callbacks.append(_bias_callback(INJECT_STEP, sc.bias))
    run = root / f"run-{sc.name}-{method.replace(' ', '_')}"
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    Trainer(load_config(overrides=overrides), data_dir=data, run_dir=run, callbacks=callbacks).run()
    seconds = time.perf_counter() - started

    softmax = int(sc.data.get("classes", 1)) > 1
    rows = _read_steps(run)
    events = _events(run)
    truth = _probe_truth(run, softmax=softmax)
    truth_onset = _truth_onset(rows, truth) if truth != "healthy" else None
    sats = [e for e in events if e["type"] == "saturation"]
    warnings = [e for e in events if e["type"] == "warning" and not str(e["kind"]).startswith(("preflight", "cpu"))]
    hit = next((e for e in sats if e["kind"] == truth), None) if truth != "healthy" else None
    first = sats[0] if sats else None
    onset = int(hit["onset_step"]) if hit else (int(first["onset_step"]) if first else None)
    detected = int(hit["step"]) if hit else (int(first["step"]) if first else None)
    early = [w for w in warnings if truth_onset is not None and w["step"] <= truth_onset]
    return Result(
        scenario=sc.name,
        method=method,
        truth=truth,
        truth_onset=truth_onset,
        verdict=(hit or first)["kind"] if (hit or first) else "silent",
        onset=onset,
        detected_at=detected,
        onset_error=abs(onset - truth_onset) if hit and truth_onset is not None else None,
        delay=detected - truth_onset if hit and truth_onset is not None else None,
        false_alarms=len(sats) - (1 if hit else 0),
        first_warning=f"{early[0]['kind']}@{early[0]['step']}" if early else "-",
        warnings=len(warnings),
        early_stopping_steps=_early_stopping_steps(run, truth_onset) if truth_onset is not None else None,
        terminate_on_nan="never" if all(math.isfinite(r["loss"]) for r in rows) else "fires",
        seconds=seconds,
    )


def run_scenario(sc: Scenario, root: Path, *, force_bias: bool = False) -> list[Result]:
    """Run one scenario: every spike tried, then the bias fallback if none gave ``expect``.

    Every run is returned (a spike that collapsed the other way is still a
    collapse the detector must see); the last one is the scenario's own row.
    ``force_bias`` skips the spikes and uses the deterministic bias callback.
    """
    if sc.expect is None:
        return [_run(sc, root, method="none")]
    results: list[Result] = []
    for lr in () if force_bias else sc.spike_lrs:
        results.append(_run(sc, root, method=f"lr spike {lr:g}", spike_lr=lr))
        if results[-1].truth == sc.expect:
            return results
    results.append(_run(sc, root, method=f"bias {sc.bias:+g}"))
    return results


def table(results: Sequence[Result]) -> str:
    """The results as a markdown table, with recall and false alarms below it."""

    def cell(v: Any) -> str:
        return "-" if v is None else str(v)

    head = ("| scenario | forced by | truth (probes) | true onset | verdict | detected onset | "
            "confirmed at | onset error | delay | false alarms | first warning ≤ onset | warnings | "
            "EarlyStopping(10) needs | TerminateOnNaN | s |")
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in results:
        lines.append("| " + " | ".join(cell(v) for v in (
            r.scenario, r.method, r.truth, r.truth_onset, r.verdict, r.onset, r.detected_at,
            r.onset_error, r.delay, r.false_alarms, r.first_warning, r.warnings,
            f"≥{r.early_stopping_steps} steps" if r.early_stopping_steps is not None else None,
            r.terminate_on_nan, f"{r.seconds:.0f}")) + " |")
    collapses = [r for r in results if r.truth != "healthy"]
    recall = sum(r.hit for r in collapses) / len(collapses) if collapses else math.nan
    alarms = sum(r.false_alarms for r in results)
    lines.append("")
    lines.append(f"Recall {recall:.0%} ({sum(r.hit for r in collapses)}/{len(collapses)}), "
                 f"false alarms {alarms}, max onset error "
                 f"{max((r.onset_error or 0) for r in collapses) if collapses else '-'} steps, "
                 f"max delay {max((r.delay or 0) for r in collapses) if collapses else '-'} steps.")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> list[Result]:
    """Run the scenarios (all, or those named), print the table, return the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="names to run (default: all)")
    parser.add_argument("--keep", type=Path, help="keep data and runs in this folder")
    parser.add_argument("--force-bias", action="store_true",
                        help="force every collapse with the logits-bias callback, not an lr spike")
    args = parser.parse_args(argv)
    chosen = [s for s in SCENARIOS if not args.scenarios or s.name in args.scenarios]
    root = args.keep or Path(tempfile.mkdtemp(prefix="tilewatch-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        results = [r for sc in chosen for r in run_scenario(sc, root, force_bias=args.force_bias)]
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    print(table(results))
    return results


if __name__ == "__main__":
    main()
