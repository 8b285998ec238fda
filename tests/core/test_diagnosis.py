"""core.diagnosis: the text carries the measured numbers; sentences and remedies follow the evidence.

Findings are built by hand with exact signals; pure Python, no TensorFlow.
"""

from __future__ import annotations

import math

from core.config import load_config, preset_path
from core.detector import SaturationFinding, WarningFinding
from core.diagnosis import Diagnosis, Remedy, diagnose

SEED_SIGNALS = {
    "onset_step": 412.0, "confirm_step": 416.0, "evidence_steps": 5.0,
    "pinned_frac": 0.999, "pinned_any": 0.999, "mask_frac": 0.14, "pos_frac": 0.0,
    "error_frac": 0.14, "recall": 0.0, "dominant_frac": 1.0,
    "logit_mean": -12000.0, "logit_spread": 800.0, "logit_absmax": 31000.0,
    "logit_mean_before": -4.0, "logit_spread_before": 3.0,
    "grad_norm_before": 0.8, "grad_norm_after": 0.0,
    "update_ratio_before": 0.002, "update_ratio_after": 0.0, "update_ratio_peak": 0.3,
    "update_peak_step": 411.0, "update_peak_epoch": 12.0, "update_jump": 150.0,
    "peak_step": 411.0, "steps_to_pin": 1.0, "lr_at_peak": 0.01, "lr_before": 0.01,
    "grad_norm_peak": 1.1, "grad_jump": 1.375,
    "loss_before": 0.14, "loss_after": 1.0, "gradient_dead": 1.0,
}


def finding(kind: str = "all_background", **changes: float) -> SaturationFinding:
    return SaturationFinding(onset_step=412, onset_epoch=12, step=416, epoch=12, kind=kind,
                             signals={**SEED_SIGNALS, **changes})


def keys(d: Diagnosis) -> list[set[str]]:
    return [set(r.changes) for r in d.remedies]


def test_seed_case_reads_like_the_issue() -> None:
    d = diagnose(finding(), cfg=load_config(preset_path("seed")))
    assert d.text.startswith(
        "At step 411 (epoch 12) the update/weight ratio jumped from 0.002 to 0.3 (150× its "
        "recent median). Within 1 step, 99.9 % of output pixels were pinned below 1e-3 while "
        "the masks held 14.0 % foreground"
    )
    assert "The logits sit near −1.2×10⁴" in d.text
    assert "still vary across the image" in d.text
    assert "The gradient norm fell from 0.8 to 0, so the run cannot recover by itself" in d.text
    assert "a Jaccard loss with smooth 1e-12" in d.text
    assert "confirmed at step 416 (epoch 12), 4 steps after the onset" in d.text
    assert d.summary == ("Outputs collapsed to all background at step 412 (epoch 12), after an "
                         "update spike; cannot recover by itself.")


def test_seed_remedies_are_ranked_config_changes() -> None:
    d = diagnose(finding(), cfg=load_config(preset_path("seed")))
    assert [r.rank for r in d.remedies] == [1, 2, 3, 4, 5, 6]
    assert [r.changes for r in d.remedies] == [
        {"train.learning_rate": 0.001},
        {"train.clipnorm": 1.0},
        {"train.loss": "bce+jaccard", "train.jaccard_smooth": 1.0},
        {"model.batch_norm": True},
        {"train.optimizer": "adam", "train.learning_rate": 0.001},
        {"monitor.policy": "rollback"},
    ]
    assert "150×" in d.remedies[0].why
    assert d.remedies[0].to_dict() == {
        "rank": 1, "title": "Lower the learning rate to 0.001",
        "why": d.remedies[0].why, "changes": {"train.learning_rate": 0.001},
    }
    # every remedy is a valid change to the config
    cfg = load_config(preset_path("seed"))
    for remedy in d.remedies:
        cfg.replace(remedy.changes)


def test_adam_bce_config_gets_only_relevant_remedies() -> None:
    cfg = load_config(overrides={"train.loss": "bce", "train.clipnorm": 1.0,
                                 "monitor.policy": "rollback"})
    d = diagnose(finding(), cfg=cfg)
    assert [r.changes for r in d.remedies] == [{"train.learning_rate": 0.0001}]
    assert "smooth" not in d.text and "Jaccard" not in d.text
    assert "a sigmoid saturated in float32 passes no gradient." in d.text


def test_schedule_is_scaled_and_the_lr_jump_is_named() -> None:
    cfg = load_config(preset_path("seed"), overrides={"train.lr_schedule": [[400, 0.5], [420, 0.01]]})
    d = diagnose(finding(lr_at_peak=0.5), cfg=cfg)
    assert "as the learning rate went from 0.01 to 0.5" in d.text
    assert d.remedies[0].changes == {"train.learning_rate": 0.001,
                                     "train.lr_schedule": [[400, 0.05], [420, 0.001]]}


def test_all_foreground_says_the_loss_still_moves() -> None:
    f = finding("all_foreground", logit_mean=9000.0, loss_after=0.86, recall=1.0, error_frac=0.86)
    d = diagnose(f, cfg=load_config(preset_path("seed")))
    assert "pinned above 1 − 1e-3 while the masks held only 14.0 % foreground" in d.text
    assert "The loss (0.86) still moves" in d.text
    assert "reads exactly 1.0" not in d.text
    assert d.summary.startswith("Outputs collapsed to all foreground")


def test_dead_units_versus_exploded_logits() -> None:
    dead = diagnose(finding(logit_mean=-6.0, logit_spread=1e-7, logit_absmax=6.0),
                    cfg=load_config(preset_path("seed")))
    assert "no longer vary across the image (spatial spread 10⁻⁷, down from 3)" in dead.text
    assert "dead ReLUs pass no gradient" in dead.text
    assert "exploded" not in dead.text
    assert dead.remedies[0].changes == {"model.batch_norm": True}
    exploded = diagnose(finding(), cfg=load_config(preset_path("seed")))
    assert "they exploded" in exploded.text and "died" not in exploded.text


def test_no_spike_is_called_a_gradual_drift() -> None:
    f = finding(update_ratio_peak=0.0025, update_jump=1.25, grad_jump=1.1, steps_to_pin=math.nan,
                logit_mean=-30.0, logit_absmax=60.0, logit_spread=2.0)
    d = diagnose(f, cfg=load_config(preset_path("seed")))
    assert d.text.startswith("No update or gradient spike preceded it")
    assert "drifted to one end gradually" in d.text
    assert "jumped" not in d.text
    assert "after a gradual drift" in d.summary
    # without a spike, clipping is no longer the second-best fix
    assert keys(d).index({"train.clipnorm"}) > keys(d).index({"model.batch_norm"})


def test_gradient_still_alive() -> None:
    d = diagnose(finding(gradient_dead=0.0, grad_norm_after=0.5, evidence_steps=15.0),
                 cfg=load_config(preset_path("seed")))
    assert "The gradient is still alive (norm 0.5 against 0.8 before)" in d.text
    assert "cannot recover" not in d.text


def test_softmax_constant_class() -> None:
    f = finding("constant_class", dominant_class=2.0, dominant_frac=1.0, pinned_any=0.998,
                error_frac=0.55, logit_mean=4000.0)
    d = diagnose(f, cfg=load_config(overrides={"train.loss": "bce"}))
    assert ("the softmax predicted class 2 for 100.0 % of pixels, 99.8 % of them pinned "
            "(top probability above 1 − 1e-3), while 55.0 % of the mask pixels") in d.text
    assert "a softmax pinned at one class passes no gradient" in d.text
    assert d.summary.startswith("Outputs collapsed to a constant class (2)")


def test_first_warning_is_named() -> None:
    w = WarningFinding(411, 12, "update_spike", {}, "spike")
    d = diagnose(finding(), cfg=load_config(preset_path("seed")), warnings=[w])
    assert "The first warning came at step 411: update spike." in d.text


def test_missing_numbers_come_from_rows() -> None:
    bare = SaturationFinding(onset_step=40, onset_epoch=3, step=44, epoch=3, kind="all_background",
                             signals={"pinned_frac": 1.0, "mask_frac": 0.2, "gradient_dead": 1.0,
                                      "grad_norm_after": 0.0})
    rows = [{"step": s, "epoch": s // 20 + 1, "update_ratio": 0.001, "grad_norm": 2.0, "lr": 0.01}
            for s in range(39)] + [{"step": 39, "epoch": 2, "update_ratio": 0.2, "lr": 0.01}]
    d = diagnose(bare, cfg=load_config(preset_path("seed")), rows=rows)
    assert d.text.startswith("At step 39 (epoch 2) the update/weight ratio jumped from 0.001 to 0.2")
    assert "fell from 2 to 0" in d.text
    assert isinstance(d.remedies[0], Remedy)


def test_loss_lock_is_said_only_when_measured() -> None:
    cfg = load_config(preset_path("seed"))
    assert "(the loss now reads 1.0000, as in the seed)" in diagnose(finding(), cfg=cfg).text
    assert "loss now reads" not in diagnose(finding(loss_after=0.8), cfg=cfg).text
