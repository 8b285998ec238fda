"""Rule tables for core.detector: hand-made signal rows with exact expected verdicts.

Pure Python; no TensorFlow.
"""

from __future__ import annotations

import math

import pytest

from core.detector import CollapseDetector, SaturationFinding, WarningFinding, detect

STEPS_PER_EPOCH = 20
NAN = math.nan


def row(step: int, **signals: float) -> dict[str, float]:
    """A healthy sigmoid row (14 % foreground masks, learning well) with overrides."""
    base = {
        "step": step,
        "epoch": step // STEPS_PER_EPOCH + 1,
        "batch": step % STEPS_PER_EPOCH,
        "loss": 0.30,
        "lr": 0.01,
        "grad_norm": 1.0,
        "update_ratio": 1e-3,
        "pos_frac": 0.12,
        "mask_frac": 0.14,
        "pinned_frac": 0.60,
        "pinned_low": 0.55,
        "pinned_high": 0.05,
        "dominant_frac": 0.88,
        "dominant_class": 0,
        "logit_mean": -4.0,
        "logit_spread": 3.0,
        "logit_absmax": 12.0,
        "error_frac": 0.03,
        "recall": 0.85,
        "empty_masks": 0.0,
        "input_mean": 0.0,
        "input_std": 1.0,
    }
    base.update(signals)
    return base


COLLAPSED_LOW = dict(
    loss=1.0, grad_norm=0.0, update_ratio=0.0, pos_frac=0.0, pinned_frac=0.999,
    pinned_low=0.999, pinned_high=0.0, dominant_frac=1.0, logit_mean=-1.2e4,
    logit_spread=800.0, logit_absmax=3e4, error_frac=0.14, recall=0.0,
)
COLLAPSED_HIGH = dict(
    loss=0.86, grad_norm=0.0, update_ratio=0.0, pos_frac=1.0, pinned_frac=0.999,
    pinned_low=0.0, pinned_high=0.999, dominant_frac=1.0, dominant_class=1,
    logit_mean=9e3, logit_spread=600.0, logit_absmax=2e4, error_frac=0.86, recall=1.0,
)


def sigmoid() -> CollapseDetector:
    return CollapseDetector(activation="sigmoid", num_outputs=1)


def saturations(findings: list) -> list[SaturationFinding]:
    return [f for f in findings if isinstance(f, SaturationFinding)]


def seed_like(spike_step: int = 30, total: int = 60) -> list[dict[str, float]]:
    """Healthy, then an update spike at ``spike_step``, pinned low from the next step on."""
    rows = []
    for step in range(total):
        if step < spike_step:
            rows.append(row(step))
        elif step == spike_step:
            rows.append(row(step, update_ratio=0.5))
        else:
            rows.append(row(step, **COLLAPSED_LOW))
    return rows


# -- silent cases ---------------------------------------------------------------

SILENT_CASES = {
    # >95 % pinned but right: pinned at both ends, recall high, tiny error.
    "healthy_confident": dict(pinned_frac=0.99, pinned_low=0.855, pinned_high=0.135,
                              error_frac=0.005, recall=0.97, grad_norm=0.05, logit_mean=-9.0),
    # a very confident model on very sparse masks, right: pinned low >= 99 %, recall high
    "confident_sparse": dict(mask_frac=0.008, pos_frac=0.008, pinned_frac=0.999,
                             pinned_low=0.991, pinned_high=0.008, error_frac=0.001, recall=0.9),
    # masks truly empty: pinned all-background is correct (and the Jaccard grad is 0)
    "empty_masks": dict(mask_frac=0.0, recall=NAN, empty_masks=1.0, pos_frac=0.0,
                        pinned_frac=1.0, pinned_low=1.0, pinned_high=0.0, error_frac=0.0,
                        grad_norm=0.0, logit_mean=-20.0),
    # early phase on sparse masks: background everywhere, not pinned, gradient alive
    "early_all_background": dict(mask_frac=0.03, pos_frac=0.0, pinned_frac=0.0, pinned_low=0.0,
                                 pinned_high=0.0, dominant_frac=1.0, error_frac=0.03, recall=0.0,
                                 logit_mean=-2.5, logit_spread=0.2),
    # not learned yet: foreground everywhere (p ~ 0.55), not pinned
    "not_learned_yet": dict(pos_frac=1.0, pinned_frac=0.0, pinned_low=0.0, pinned_high=0.0,
                            dominant_frac=1.0, dominant_class=1, error_frac=0.86, recall=1.0,
                            logit_mean=0.2, logit_spread=0.01),
    # slow learner: tiny lr, tiny updates, half-way predictions
    "slow_learner": dict(lr=1e-6, update_ratio=1e-7, pos_frac=0.3, pinned_frac=0.0,
                         pinned_low=0.0, pinned_high=0.0, error_frac=0.4, recall=0.5,
                         logit_mean=-0.1, logit_spread=0.05),
}


@pytest.mark.parametrize("name", sorted(SILENT_CASES))
def test_silent_on_healthy_patterns(name: str) -> None:
    rows = [row(step, **SILENT_CASES[name]) for step in range(80)]
    assert detect(rows, activation="sigmoid", num_outputs=1) == []


def test_silent_when_empty_mask_batches_interleave_a_healthy_run() -> None:
    rows = [
        row(s, **(SILENT_CASES["empty_masks"] if s % 3 == 0 else SILENT_CASES["healthy_confident"]))
        for s in range(90)
    ]
    assert saturations(detect(rows, activation="sigmoid", num_outputs=1)) == []


def test_brief_overshoot_with_live_gradient_is_not_a_collapse() -> None:
    # pinned and wrong for 8 steps, but the gradient is alive and it recovers
    rows = [row(s) for s in range(30)]
    rows += [row(s, **{**COLLAPSED_LOW, "grad_norm": 2.0}) for s in range(30, 38)]
    rows += [row(s) for s in range(38, 60)]
    assert saturations(detect(rows, activation="sigmoid", num_outputs=1)) == []


# -- collapses -----------------------------------------------------------------


def test_seed_like_collapse_all_background() -> None:
    findings = detect(seed_like(), activation="sigmoid", num_outputs=1)
    (sat,) = saturations(findings)
    assert (sat.kind, sat.onset_step, sat.onset_epoch) == ("all_background", 31, 2)
    assert (sat.step, sat.epoch) == (35, 2)  # 5 evidence steps, gradient dead
    s = sat.signals
    assert s["update_ratio_before"] == 1e-3
    assert s["update_ratio_peak"] == 0.5
    assert s["peak_step"] == 30
    assert s["steps_to_pin"] == 1
    assert s["pinned_frac"] == 0.999
    assert s["mask_frac"] == pytest.approx(0.14)
    assert s["grad_norm_before"] == 1.0
    assert s["grad_norm_after"] == 0.0
    assert s["gradient_dead"] == 1.0
    assert s["logit_mean"] == -1.2e4


def test_update_spike_warning_fires_at_or_before_onset() -> None:
    findings = detect(seed_like(), activation="sigmoid", num_outputs=1)
    (sat,) = saturations(findings)
    warnings = [f for f in findings if isinstance(f, WarningFinding)]
    kinds = {w.kind: w.step for w in warnings}
    assert kinds["update_spike"] == 30 <= sat.onset_step
    assert kinds["logit_drift"] == 31
    assert "500x" in next(w.message for w in warnings if w.kind == "update_spike")


def test_all_foreground_collapse() -> None:
    rows = [row(s) for s in range(40)] + [row(s, **COLLAPSED_HIGH) for s in range(40, 60)]
    (sat,) = saturations(detect(rows, activation="sigmoid", num_outputs=1))
    assert (sat.kind, sat.onset_step, sat.onset_epoch, sat.step) == ("all_foreground", 40, 3, 44)
    assert sat.signals["error_frac"] == pytest.approx(0.86)


def test_all_foreground_on_all_foreground_masks_is_right() -> None:
    rows = [row(s, **{**COLLAPSED_HIGH, "mask_frac": 1.0, "error_frac": 0.0}) for s in range(40)]
    assert saturations(detect(rows, activation="sigmoid", num_outputs=1)) == []


def test_softmax_constant_class() -> None:
    healthy = dict(pinned_frac=0.7, dominant_frac=0.6, dominant_class=0, error_frac=0.1,
                   logit_mean=5.0)
    collapsed = dict(pinned_frac=1.0, dominant_frac=1.0, dominant_class=2, error_frac=0.55,
                     grad_norm=0.0, logit_mean=4e3)
    rows = [row(s, **healthy) for s in range(25)] + [row(s, **collapsed) for s in range(25, 40)]
    (sat,) = saturations(detect(rows, activation="softmax", num_outputs=3))
    assert (sat.kind, sat.onset_step, sat.onset_epoch, sat.step) == ("constant_class", 25, 2, 29)
    assert sat.signals["dominant_class"] == 2


def test_softmax_constant_background_on_empty_masks_is_silent() -> None:
    rows = [row(s, pinned_frac=1.0, dominant_frac=1.0, dominant_class=0, error_frac=0.0,
                mask_frac=0.0, grad_norm=0.0) for s in range(40)]
    assert saturations(detect(rows, activation="softmax", num_outputs=3)) == []


def test_live_gradient_collapse_needs_the_longer_window() -> None:
    rows = [row(s) for s in range(30)]
    rows += [row(s, **{**COLLAPSED_LOW, "grad_norm": 2.0}) for s in range(30, 60)]
    (sat,) = saturations(detect(rows, activation="sigmoid", num_outputs=1))
    assert (sat.onset_step, sat.step) == (30, 44)  # 15 evidence steps
    assert sat.signals["gradient_dead"] == 0.0


def test_empty_mask_batches_inside_a_collapse_neither_break_it_nor_count() -> None:
    empty = dict(COLLAPSED_LOW, mask_frac=0.0, recall=NAN, error_frac=0.0)
    rows = [row(s) for s in range(30)]
    # step 30 is an empty-mask batch already pinned: the look-back starts the onset there
    rows += [row(s, **(empty if s in (30, 32, 35) else COLLAPSED_LOW)) for s in range(30, 50)]
    (sat,) = saturations(detect(rows, activation="sigmoid", num_outputs=1))
    assert (sat.onset_step, sat.step) == (30, 37)  # evidence at 31, 33, 34, 36, 37
    assert sat.signals["evidence_steps"] == 5


@pytest.mark.parametrize("sizes", [(1,), (4,), (7,), (3, 8, 5, 13)])
def test_chunked_delivery_gives_the_same_findings(sizes: tuple[int, ...]) -> None:
    rows = seed_like()
    whole = detect(rows, activation="sigmoid", num_outputs=1)
    detector = sigmoid()
    chunked, i, k = [], 0, 0
    while i < len(rows):
        n = sizes[k % len(sizes)]
        chunked += detector.update(rows[i : i + n])
        i, k = i + n, k + 1
    assert chunked == whole


def test_reported_once_until_rollback_then_rearmed() -> None:
    detector = sigmoid()
    rows = seed_like(total=80)
    assert len(saturations(detector.update(rows[:50]))) == 1
    assert saturations(detector.update(rows[50:])) == []
    assert detector.collapsed
    detector.after_rollback(to_step=29)
    assert not detector.collapsed
    again = [row(s) for s in range(80, 90)] + [row(s, **COLLAPSED_LOW) for s in range(90, 100)]
    (sat,) = saturations(detector.update(again))
    assert sat.onset_step == 90
    # the healthy baseline before the rollback point survived it
    assert sat.signals["grad_norm_before"] == 1.0


def test_recovery_rearms_for_a_new_collapse() -> None:
    rows = seed_like(total=45)
    rows += [row(s) for s in range(45, 60)]
    rows += [row(s, **COLLAPSED_HIGH) for s in range(60, 70)]
    sats = saturations(detect(rows, activation="sigmoid", num_outputs=1))
    assert [(s.kind, s.onset_step) for s in sats] == [("all_background", 31), ("all_foreground", 60)]


def test_reset_forgets_everything() -> None:
    detector = sigmoid()
    detector.update(seed_like())
    detector.reset()
    assert not detector.collapsed
    (sat,) = saturations(detector.update(seed_like()))
    assert sat.onset_step == 31


def test_input_not_normalised_warns_once() -> None:
    rows = [row(s, input_mean=3100.0, input_std=850.0) for s in range(300)]
    warnings = [f for f in detect(rows, activation="sigmoid", num_outputs=1)
                if f.kind == "input_not_normalised"]
    assert [w.step for w in warnings] == [0]
    assert "mean 3100 and std 850" in warnings[0].message


def test_spread_collapse_and_loss_spike_warnings() -> None:
    rows = [row(s, loss=0.2 + 0.01 * (s % 3)) for s in range(20)]
    rows.append(row(20, loss=0.9))
    rows.append(row(21, logit_spread=1e-5, logit_mean=-3.0))
    found = {f.kind: f.step for f in detect(rows, activation="sigmoid", num_outputs=1)}
    assert found == {"loss_spike": 20, "spread_collapse": 21}


def test_warnings_are_rate_limited() -> None:
    rows = [row(s) for s in range(20)]
    rows += [row(s, update_ratio=0.5) for s in range(20, 23)]
    spikes = [f for f in detect(rows, activation="sigmoid", num_outputs=1) if f.kind == "update_spike"]
    assert [w.step for w in spikes] == [20]


def test_healthy_run_raises_no_warnings() -> None:
    rows = [row(s, grad_norm=1.0 + 0.5 * math.sin(s), loss=0.3 + 0.05 * math.cos(s)) for s in range(200)]
    assert detect(rows, activation="sigmoid", num_outputs=1) == []


def test_bad_options_are_refused() -> None:
    with pytest.raises(ValueError, match="sigmoid, softmax"):
        CollapseDetector(activation="tanh", num_outputs=1)
    with pytest.raises(ValueError, match="confirm_steps"):
        CollapseDetector(activation="sigmoid", num_outputs=1, confirm_steps=10, confirm_steps_alive=5)


def test_softmax_confident_background_that_finds_sparse_objects_is_silent() -> None:
    # 99.2 % background predicted, pinned, the masks hold 0.8 % foreground and it finds most of it
    rows = [row(s, pinned_frac=0.995, dominant_frac=0.992, dominant_class=0, mask_frac=0.008,
                error_frac=0.006, recall=0.6, grad_norm=0.01) for s in range(60)]
    assert saturations(detect(rows, activation="softmax", num_outputs=3)) == []
