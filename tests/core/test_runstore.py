"""core.runstore + core.events: atomic records, tolerant reading, refusals."""

from __future__ import annotations

import json

import pytest

from core.events import EpochEnd, Saturation, StepsLogged, WarningEvent, event_from_dict
from core.runstore import RunError, RunWriter, read_run


def _run(tmp_path):
    writer = RunWriter(tmp_path / "run")
    writer.create({"status": "running", "config": {}, "saturation": None})
    return writer


def test_events_round_trip_through_json():
    ev = Saturation(step=12, epoch=2, onset_step=9, kind="all_background", signals={"pinned_frac": 0.999},
                    diagnosis="x", remedies=({"rank": 1, "title": "t", "changes": {"train.clipnorm": 1.0}},))
    back = event_from_dict(json.loads(json.dumps(ev.to_dict())))
    assert back == ev and back.type == "saturation"
    with pytest.raises(ValueError, match="unknown event type"):
        event_from_dict({"type": "nope", "step": 0, "epoch": 1})


def test_writer_records_and_reader_reads(tmp_path):
    w = _run(tmp_path)
    w.append_steps([{"step": 0, "epoch": 1, "loss": 0.5}, {"step": 1, "epoch": 1, "loss": 0.25}])
    w.append_history({"epoch": 1, "loss": 0.4, "val_loss": 0.3})
    w.append_event(EpochEnd(step=2, epoch=1, metrics={"loss": 0.4}))
    w.append_event(StepsLogged(step=1, epoch=1, rows=()))  # listener-only, but writable
    w.update(status="completed")
    run = read_run(w.path)
    assert run.status == "completed"
    assert run.steps["loss"].tolist() == [0.5, 0.25]
    assert run.history["val_loss"].tolist() == [0.3]
    assert [e.type for e in run.events] == ["epoch_end", "steps"]


def test_reader_ignores_a_half_written_last_line(tmp_path):
    w = _run(tmp_path)
    w.append_steps([{"step": 0, "epoch": 1, "loss": 0.5}])
    w.append_event(WarningEvent(step=0, epoch=1, kind="k", signals={}, message="m"))
    with open(w.path / "steps.csv", "a") as fh:
        fh.write("1,1,0.2")  # no newline: still being written
    with open(w.path / "events.jsonl", "a") as fh:
        fh.write('{"type": "warning", "st')
    run = read_run(w.path)
    assert run.steps["step"].tolist() == [0.0]
    assert len(run.events) == 1


def test_refuses_to_overwrite_a_run_or_a_full_folder(tmp_path):
    w = _run(tmp_path)
    with pytest.raises(RunError, match="already holds a run"):
        RunWriter(w.path)
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an empty folder"):
        RunWriter(other)
    with pytest.raises(RunError, match="not a Tilewatch run"):
        RunWriter(tmp_path / "nothing", resume=True)
    with pytest.raises(RunError, match="not a Tilewatch run"):
        read_run(tmp_path / "nothing")


def test_truncate_after_drops_records_past_a_checkpoint(tmp_path):
    w = _run(tmp_path)
    w.append_steps([{"step": s, "epoch": 1 + s // 3, "loss": s} for s in range(7)])
    for e in (1, 2, 3):
        w.append_history({"epoch": e, "loss": 1.0})
    w.append_event(WarningEvent(step=2, epoch=1, kind="k", signals={}, message="kept"))
    w.append_event(WarningEvent(step=5, epoch=2, kind="k", signals={}, message="dropped"))
    w.truncate_after(step=3, epoch=1)
    run = read_run(w.path)
    assert run.steps["step"].tolist() == [0, 1, 2]
    assert run.history["epoch"].tolist() == [1]
    assert [e.message for e in run.events] == ["kept"]


def test_numpy_scalars_are_written_as_plain_numbers(tmp_path):
    import numpy as np

    w = _run(tmp_path)
    w.append_steps([{"step": np.int64(0), "loss": np.float64(0.5), "lr": np.float32(0.25)}])
    assert read_run(w.path).steps["loss"].tolist() == [0.5]
    assert (w.path / "steps.csv").read_text().splitlines()[1] == "0,0.5,0.25"
