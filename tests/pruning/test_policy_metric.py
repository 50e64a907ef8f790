"""Policies on any metric: direction, wording, round trips; scripted, no Keras."""

import json

import pytest

from tests.pruning.scripted import drive
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget, Policy, RoundResult

MAE_BASELINE = RoundResult(0, 0.0, params=1000, flops=100_000, score=0.30)


def drive_scores(policy, baseline, rows):
    """Like `drive`, with `score=` results (values outside [0, 1] allowed)."""
    decisions = [policy.start(baseline)]
    for score, params in rows:
        if decisions[-1].action == "stop":
            break
        result = RoundResult(policy.next_round, decisions[-1].threshold, params=params,
                             flops=params * 100, score=score)
        decisions.append(policy.observe(result))
    return decisions


def test_min_mode_treats_a_rise_of_the_error_as_the_drop():
    policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min", step=0.1)
    # MAE 0.30 -> 0.33 (rise 0.03, ok), 0.34 (0.04, ok), 0.40 (0.10 > 0.05: fail).
    decisions = drive_scores(policy, MAE_BASELINE, [(0.33, 900), (0.34, 800), (0.40, 500)])
    assert [d.action for d in decisions] == ["prune", "prune", "prune", "rollback"]
    assert decisions[3].rollback_to == 2 and decisions[3].threshold == pytest.approx(0.15)
    assert decisions[3].reason.startswith("mae rise 0.1 > 0.05: roll back to round 2")


def test_min_mode_accepts_a_lower_error_and_rejects_just_past_the_bound():
    policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min")
    policy.start(MAE_BASELINE)
    assert policy.acceptable(RoundResult(1, 0.0, params=1, flops=1, score=0.10))
    assert policy.acceptable(RoundResult(1, 0.0, params=1, flops=1, score=0.35))
    assert not policy.acceptable(RoundResult(1, 0.0, params=1, flops=1, score=0.3501))
    assert policy.score_bound() == pytest.approx(0.35)


def test_min_mode_best_round_ties_go_to_the_lower_error():
    policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min", max_rounds=3)
    decisions = drive_scores(policy, MAE_BASELINE, [(0.31, 800), (0.34, 700), (0.32, 700)])
    assert decisions[-1].best_round == 3
    assert decisions[-1].reason.endswith("best round 3: params 70.00% of baseline, mae rise 0.02")


def test_max_mode_on_another_metric_reads_the_same_as_accuracy():
    policy = AccuracyGuaranteed(max_accuracy_drop=0.02, metric="auc")
    decisions = drive(policy, RoundResult(0, 0.0, 0.95, 1000, 1), [(0.94, 900, 1)])
    assert decisions[1].reason == "auc drop 1.00% <= 2.00%: raise T to 0.1 (step 0.1)"


def test_a_loss_bound_may_exceed_one_but_an_accuracy_bound_may_not():
    assert AccuracyGuaranteed(max_metric_drop=2.5, metric="loss", mode="min").max_accuracy_drop == 2.5
    with pytest.raises(ConfigurationError, match="`max_metric_drop`.*2.5"):
        AccuracyGuaranteed(max_metric_drop=2.5)


def test_giving_both_names_of_the_bound_is_refused():
    with pytest.raises(ConfigurationError, match="pass only one"):
        AccuracyGuaranteed(max_accuracy_drop=0.01, max_metric_drop=0.01)


@pytest.mark.parametrize("name, value", [("mode", "maximum"), ("metric", ""), ("metric", None),
                                         ("schedule", "fast"), ("threshold_tolerance", 0.0)])
def test_bad_metric_or_schedule_argument_is_refused_naming_it(name, value):
    with pytest.raises(ConfigurationError, match=f"`{name}`"):
        AccuracyGuaranteed(**{name: value})


def test_target_policy_reports_the_loss_of_the_round_meeting_the_target():
    policy = ParamsTarget(reduction=0.5, tolerance=0.1, metric="loss", mode="min")
    policy.start(RoundResult(0, 0.0, params=1000, flops=1, score=1.2))
    policy.observe(RoundResult(1, 0.0, params=800, flops=1, score=1.3))
    decision = policy.observe(RoundResult(2, 0.2, params=450, flops=1, score=1.9))
    assert decision.action == "stop" and decision.best_round == 2
    assert decision.reason.endswith("reduces params by 55.00% (target 50.00%), loss 1.9")


def test_target_not_met_ties_in_size_go_to_the_lower_loss():
    policy = ParamsTarget(reduction=0.5, metric="loss", mode="min", max_rounds=3)
    decisions = drive_scores(policy, RoundResult(0, 0.0, params=1000, flops=1, score=1.2),
                             [(1.3, 800), (1.6, 700), (1.4, 700)])
    assert decisions[-1].best_round == 3
    # With mode="max" the same values would pick the higher one.
    policy = ParamsTarget(reduction=0.5, metric="auc", max_rounds=3)
    decisions = drive_scores(policy, RoundResult(0, 0.0, params=1000, flops=1, score=0.9),
                             [(0.8, 800), (0.86, 700), (0.84, 700)])
    assert decisions[-1].best_round == 2


def test_round_result_takes_any_finite_score_but_accuracy_only_as_a_fraction():
    assert RoundResult(1, 0.0, params=1, flops=1, score=12.5).accuracy == 12.5
    assert RoundResult(1, 0.0, params=1, flops=1, score=-3.0).score == -3.0
    with pytest.raises(ConfigurationError, match="`accuracy`.*12.5"):
        RoundResult(1, 0.0, 12.5, 1, 1)
    with pytest.raises(ConfigurationError, match="`score`.*inf"):
        RoundResult(1, 0.0, params=1, flops=1, score=float("inf"))


def test_round_result_needs_exactly_one_quality_value():
    with pytest.raises(ConfigurationError, match="reports no quality"):
        RoundResult(1, 0.0, params=1, flops=1)
    with pytest.raises(ConfigurationError, match="pass only one"):
        RoundResult(1, 0.0, 0.9, 1, 1, score=0.8)
    assert RoundResult(1, 0.0, 0.9, 1, 1, score=0.9) == RoundResult(1, 0.0, 0.9, 1, 1)


@pytest.mark.parametrize("kind, options", [
    (AccuracyGuaranteed, {"max_metric_drop": 0.5, "metric": "mse", "mode": "min"}),
    (ParamsTarget, {"reduction": 0.6, "metric": "loss", "mode": "min"}),
    (FlopsTarget, {"reduction": 0.4, "metric": "mean_io_u", "schedule": "bisect", "threshold_tolerance": 0.05}),
])
def test_metric_mode_and_schedule_round_trip_through_config_and_state(kind, options):
    policy = kind(**options)
    config = policy.get_config()
    assert kind(**config).get_config() == config
    policy.start(RoundResult(0, 0.0, params=1000, flops=1000, score=0.7))
    policy.observe(RoundResult(1, 0.0, params=900, flops=900, score=0.7))
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    assert (restored.metric, restored.mode, restored.schedule) == (policy.metric, policy.mode, policy.schedule)
    assert restored.state_dict() == policy.state_dict()


def test_a_format_one_state_from_before_scores_still_resumes():
    policy = AccuracyGuaranteed(max_rounds=10)
    drive(policy, RoundResult(0, 0.0, 0.93, 1000, 1), [(0.93, 900, 1), (0.80, 500, 1)])
    old = json.loads(json.dumps(policy.state_dict()))
    old["format"] = 1
    for entry in old["history"]:
        entry["accuracy"] = entry.pop("score")
    for entry in old["lineage"]:
        del entry["ceiling"]
    del old["recovery"]
    for key in ("metric", "mode", "schedule", "threshold_tolerance"):
        del old["config"][key]
    restored = Policy.from_state(old)
    assert restored.state_dict() == policy.state_dict()
    assert restored.observe(RoundResult(3, policy.last_decision.threshold, 0.93, 800, 1)) == policy.observe(
        RoundResult(3, policy.last_decision.threshold, 0.93, 800, 1)
    )
