"""The command line: verbs, exit codes, and bad input refused cleanly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile

from core.cli import main
from tests.core.helpers import TINY

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=timeout)


def _sets(overrides: dict) -> list[str]:
    out = []
    for key, value in overrides.items():
        out += ["--set", f"{key}={json.dumps(value)}"]
    return out


@pytest.fixture(scope="module")
def data(synth_data):
    return synth_data(tiles=8, size=96, seed=11)


# -- bad input: exit 2, a message naming the file or key, nothing written ----
def _assert_refused(capsys, argv, *words, unwritten=None):
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    for word in words:
        assert word in err
    if unwritten is not None:
        assert not Path(unwritten).exists(), f"{unwritten} was written"


def test_unknown_config_key(capsys, data, tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[train]\nlearning_rat = 0.1\n")
    _assert_refused(capsys, ["train", "--data", str(data), "--config", str(cfg), "--run-dir", str(tmp_path / "r")],
                    "bad.toml", "train.learning_rat", "learning_rate", unwritten=tmp_path / "r")


def test_bad_value_and_bad_set(capsys, data, tmp_path):
    _assert_refused(capsys, ["train", "--data", str(data), "--set", "train.optimizer=lion", "--run-dir", str(tmp_path / "r")],
                    "train.optimizer", "'adam'", unwritten=tmp_path / "r")
    _assert_refused(capsys, ["train", "--data", str(data), "--set", "train.epochs", "--run-dir", str(tmp_path / "r")],
                    "section.key=value", unwritten=tmp_path / "r")


def test_unparsable_toml(capsys, data, tmp_path):
    cfg = tmp_path / "broken.toml"
    cfg.write_text("[train\n")
    _assert_refused(capsys, ["train", "--data", str(data), "--config", str(cfg), "--run-dir", str(tmp_path / "r")],
                    "broken.toml", "not valid TOML", unwritten=tmp_path / "r")


def test_bad_data_folder(capsys, tmp_path):
    _assert_refused(capsys, ["train", "--data", str(tmp_path / "nope"), "--run-dir", str(tmp_path / "r")],
                    "nope", unwritten=tmp_path / "r")


def test_resume_on_a_folder_that_is_not_a_run(capsys, tmp_path):
    (tmp_path / "plain").mkdir()
    _assert_refused(capsys, ["train", "--resume", str(tmp_path / "plain")], "plain", "not a Tilewatch run")
    assert list((tmp_path / "plain").iterdir()) == []


def test_run_dir_that_holds_another_run(capsys, data, tmp_path):
    run = tmp_path / "taken"
    run.mkdir()
    (run / "run.json").write_text('{"status": "completed"}')
    _assert_refused(capsys, ["train", "--data", str(data), "--run-dir", str(run)], "already holds a run")
    assert [p.name for p in run.iterdir()] == ["run.json"]


def test_predict_on_a_run_without_checkpoints(capsys, data, tmp_path):
    run = tmp_path / "young"
    (run / "checkpoints").mkdir(parents=True)
    (run / "run.json").write_text('{"status": "running"}')
    _assert_refused(capsys, ["predict", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "out")],
                    "no checkpoint", unwritten=tmp_path / "out")


def test_check_verb(capsys, data, tmp_path):
    assert main(["check", str(data)]) == 0
    out = capsys.readouterr().out
    assert "tiles:" in out and "usable: yes" in out
    assert main(["check", str(tmp_path / "missing")]) == 2


def test_synth_rejects_bad_options(capsys, tmp_path):
    _assert_refused(capsys, ["synth", str(tmp_path / "s"), "--tiles", "0"], "tiles")


# -- the full path in real processes ------------------------------------------
@pytest.mark.slow
def test_train_inspect_predict(data, tmp_path):
    run = tmp_path / "run"
    out = _cli("train", "--data", str(data), "--run-dir", str(run), *_sets(TINY))
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Epoch 2/2" in out.stdout and "run completed" in out.stdout
    info = _cli("inspect", str(run))
    assert info.returncode == 0 and "status:   completed" in info.stdout and "saturation: none" in info.stdout
    pred = _cli("predict", "--run", str(run), "--data", str(data), "--out", str(tmp_path / "pred"))
    assert pred.returncode == 0, pred.stderr[-3000:]
    for src in sorted((data / "images").glob("*.tif")):
        dst = tmp_path / "pred" / src.name
        with tifffile.TiffFile(src) as a, tifffile.TiffFile(dst) as b:
            for code in (33550, 33922, 34735):
                assert code in b.pages[0].tags, f"{dst.name} lost GeoTIFF tag {code}"
                assert np.array_equal(np.asarray(a.pages[0].tags[code].value), np.asarray(b.pages[0].tags[code].value))
            assert b.pages[0].shape[:2] == a.series[0].shape[-2:] or b.pages[0].shape[:2] == a.series[0].shape[:2]
    bad_epoch = _cli("predict", "--run", str(run), "--epoch", "9", "--data", str(data), "--out", str(tmp_path / "p9"))
    assert bad_epoch.returncode == 2 and "epoch 9" in bad_epoch.stderr and "Traceback" not in bad_epoch.stderr


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_has_no_gap_and_no_duplicate(data, tmp_path):
    run = tmp_path / "killed"
    sets = _sets({**TINY, "train.epochs": 4, "train.steps_per_epoch": 12, "train.lr_schedule": [[30, 5e-4]]})
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.Popen([sys.executable, "-m", "core", "train", "--data", str(data), "--run-dir", str(run), *sets],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    steps_csv = run / "steps.csv"
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            if steps_csv.exists() and steps_csv.read_text().count("\n") > 1 + 12 + 5:  # mid epoch 2
                break
            time.sleep(0.05)
        else:
            pytest.fail("training never reached epoch 2")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    assert json.loads((run / "run.json").read_text())["status"] == "running"
    resumed = _cli("train", "--resume", str(run))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    from core import read_run

    record = read_run(run)
    assert record.status == "completed"
    assert record.steps["step"].tolist() == list(range(48))
    assert record.steps["epoch"].tolist() == [e for e in (1, 2, 3, 4) for _ in range(12)]
    assert record.history["epoch"].tolist() == [1, 2, 3, 4]
    # the schedule and the optimizer's iteration counter continued from the checkpoint
    assert np.allclose(record.steps["lr"], [1e-3] * 30 + [5e-4] * 18)
    assert [e.type for e in record.events].count("run_started") == 2
