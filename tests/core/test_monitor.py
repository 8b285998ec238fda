"""core.monitor in real fit() runs: forced collapses, one run per policy."""

from __future__ import annotations

import numpy as np
import pytest

from core import Trainer, load_config, read_run
from core.runstore import read_prediction
from tests.core.helpers import SEEDLIKE, PinOutputs

pytestmark = pytest.mark.slow

STEPS = 8  # steps per epoch in SEEDLIKE


@pytest.fixture(scope="module")
def data(synth_data):
    return synth_data(tiles=8, size=96, seed=5)


def _run(data, tmp_path, *, bias, at, **overrides):
    cfg = load_config(overrides={**SEEDLIKE, "train.epochs": 3, **overrides})
    return Trainer(cfg, data_dir=data, run_dir=tmp_path / "run", callbacks=[PinOutputs(at=at, bias=bias)]).run()


@pytest.mark.parametrize("bias, kind", [(-50.0, "all_background"), (50.0, "all_foreground")])
def test_mark_finds_the_onset_step_epoch_and_kind(data, tmp_path, bias, kind):
    at = 11  # epoch 2, batch 3
    result = _run(data, tmp_path, bias=bias, at=at)
    assert result.status == "completed"  # mark: carry on
    run = read_run(result.run_dir)
    (sat,) = run.events_of("saturation")
    assert sat.onset_step == at
    assert sat.epoch == at // STEPS + 1
    assert sat.kind == kind
    assert sat.step - sat.onset_step <= 20
    assert str(at) in sat.diagnosis and sat.remedies
    assert run.info["saturation"] == {"epoch": 2, "step": sat.step, "onset_step": at, "kind": kind}
    snapshot = result.run_dir / "predictions" / f"step-{sat.step:07d}.tif"
    pinned = read_prediction(snapshot)
    assert (pinned < 1e-3).mean() > 0.99 if bias < 0 else (pinned > 1 - 1e-3).mean() > 0.99
    # the loss of the seed's collapse: exactly 1.0000 for all-background
    if kind == "all_background":
        assert run.steps["loss"][at + 1 :].max() == pytest.approx(1.0, abs=1e-4)


def test_stop_ends_the_run_as_collapsed_within_a_few_steps(data, tmp_path):
    result = _run(data, tmp_path, bias=-50.0, at=5, **{"monitor.policy": "stop"})
    assert result.status == "collapsed"
    run = read_run(result.run_dir)
    assert run.steps["step"][-1] <= 5 + 20
    assert run.events[-1].status == "collapsed"


def test_rollback_restores_and_recovers(data, tmp_path):
    result = _run(data, tmp_path, bias=-50.0, at=11, **{"monitor.policy": "rollback", "train.epochs": 4})
    run = read_run(result.run_dir)
    (rb,) = run.events_of("rollback")
    assert rb.to_step <= 11
    assert rb.new_learning_rate == pytest.approx(0.001)
    steps = run.steps["step"]
    assert (np.diff(steps) == 1).all(), "steps stay monotonic through a rollback"
    assert result.status == "completed"
    final = read_prediction(result.run_dir / "predictions" / "epoch-0004.tif")
    assert final.std() > 0.05 and (final < 1e-3).mean() < 0.99, "predictions are useful again"
