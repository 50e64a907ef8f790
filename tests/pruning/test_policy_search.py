"""The two threshold searches on scripted sequences and on a simulated model; no Keras."""

import json

import pytest

from tests.pruning.scripted import (
    BASELINE, DriftingModel, SimulatedModel, drive, drive_on, run_simulation, thresholds,
)
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget, Policy

OK, BAD = 0.93, 0.80


def bisect(**options):
    return AccuracyGuaranteed(schedule="bisect", **{"step": 0.1, **options})


def test_bisect_doubles_the_step_while_rounds_pass():
    script = [(OK, 900, 1), (OK, 800, 1), (OK, 700, 1), (OK, 600, 1)]
    decisions = drive(bisect(initial_threshold=0.5), BASELINE, script)
    assert thresholds(decisions) == pytest.approx([0.5, 0.6, 0.8, 1.2, 2.0])
    assert decisions[2].reason == "accuracy drop 0.00% <= 1.00%: raise T to 0.8 (step 0.2)"


def test_bisect_retries_halfway_between_last_pass_and_first_failure():
    # T: 0, 0.1, 0.3 pass; 0.7 fails -> 0.5 passes -> 0.6 fails -> 0.55 ...
    script = [(OK, 900, 1), (OK, 800, 1), (OK, 700, 1), (BAD, 300, 1), (OK, 600, 1), (BAD, 400, 1)]
    decisions = drive(bisect(), BASELINE, script)
    assert [(d.action, d.rollback_to) for d in decisions[4:7]] == [("rollback", 3), ("prune", None),
                                                                   ("rollback", 5)]
    assert thresholds(decisions[4:7]) == pytest.approx([0.5, 0.6, 0.55])
    assert decisions[4].reason == (
        "accuracy drop 13.00% > 1.00%: roll back to round 3, T=0.5, halfway between 0.3 and the failing T=0.7"
    )
    assert decisions[5].reason == "accuracy drop 0.00% <= 1.00%: T=0.6, halfway to the failing T=0.7"


def test_bisect_stops_when_a_models_own_bracket_is_narrower_than_the_tolerance():
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 400, 1), (OK, 800, 1), (BAD, 700, 1), (OK, 1, 1)]
    # Bisection on T alone (trimmed retries are tested below).
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2, size_tolerance=None)
    decisions = drive(policy, BASELINE, script)
    # Round 1 (T=0.2) passes; 0.3 fails -> 0.25 fails -> 0.225 passes. Its
    # inherited bracket [0.225, 0.25] is within 0.03, but was measured on
    # round 1's model: round 5 retries 0.25 on round 4's. It fails: round 4's
    # own bracket is closed, so the run stops.
    assert thresholds(decisions[:6]) == pytest.approx([0.2, 0.3, 0.25, 0.225, 0.25, None])
    assert decisions[4].reason.endswith("T=0.25: retry the failing T of an earlier model on this one")
    assert decisions[5].action == "stop" and decisions[5].best_round == 4
    assert "the bracket T in [0.225, 0.25] is within threshold_tolerance=0.03: converged" in decisions[5].reason


def test_bisect_grows_again_when_a_retrained_model_passes_the_old_ceiling():
    # As measured on vgg_small: T=0.4 failed from one model and passed from a
    # later one, whose scores had moved during retraining.
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 400, 1), (OK, 800, 1), (OK, 700, 1), (OK, 600, 1)]
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    decisions = drive(policy, BASELINE, script)
    # 0.25 passes on round 4's model: the ceiling is dropped, and T grows by
    # the last half-width (0.025), doubling after each pass.
    assert thresholds(decisions[4:7]) == pytest.approx([0.25, 0.275, 0.325])
    assert all(d.action == "prune" for d in decisions[4:7])
    assert policy.state_dict()["lineage"][-1]["ceiling"] is None


def test_bisect_from_a_failing_first_round_retries_below_the_initial_threshold():
    decisions = drive(bisect(initial_threshold=1.0), BASELINE, [(BAD, 300, 1), (OK, 700, 1)])
    assert (decisions[1].rollback_to, decisions[1].threshold) == (0, pytest.approx(0.5))
    assert decisions[2].threshold == pytest.approx(0.75)


def test_bisect_stops_after_max_rollbacks_failures_from_one_round():
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 400, 1), (BAD, 500, 1)]
    policy = bisect(initial_threshold=1.0, max_rollbacks=2)
    decisions = drive(policy, BASELINE, script)
    assert [d.action for d in decisions] == ["prune", "prune", "rollback", "rollback", "stop"]
    assert decisions[-1].best_round == 1
    assert "round 1 was already retried 2 times" in decisions[-1].reason
    assert policy.exhausted_rounds == [1]


def test_bisect_treats_a_failure_that_pruned_nothing_as_noise():
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 900, 1)]
    decisions = drive(bisect(initial_threshold=0.2), BASELINE, script)
    # Round 3 at T=0.25 pruned nothing and failed: keep round 1, move up to 0.275.
    assert (decisions[3].action, decisions[3].rollback_to) == ("rollback", 1)
    assert decisions[3].threshold == pytest.approx(0.275)
    assert "retraining noise" in decisions[3].reason


def test_bisect_state_round_trip_keeps_the_bracket():
    policy = bisect()
    drive(policy, BASELINE, [(OK, 900, 1), (OK, 800, 1), (OK, 700, 1), (BAD, 300, 1)])
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.state_dict() == policy.state_dict()
    assert restored.state_dict()["lineage"][-1]["ceiling"] == pytest.approx(0.7)


def test_bisect_target_policy_bisects_an_overshoot_into_the_window():
    reductions = [0.1, 0.3, 0.9, 0.5, 0.71]
    script = [(0.9, round(1000 * (1 - x)), 1) for x in reductions]
    decisions = drive(ParamsTarget(reduction=0.7, schedule="bisect", step=0.2), BASELINE, script)
    # T: 0, 0.2, 0.6 (overshoot) -> 0.4 -> 0.5 meets the target.
    assert thresholds(decisions[:5]) == pytest.approx([0.0, 0.2, 0.6, 0.4, 0.5])
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 5


@pytest.mark.parametrize("knee", [0.6, 0.45, 0.35, 0.25])
def test_bisect_converges_in_far_fewer_rounds_than_the_paper_to_a_similar_size(knee):
    paper_rounds, paper_kept = run_simulation(AccuracyGuaranteed(), SimulatedModel(knee=knee))
    bisect_rounds, bisect_kept = run_simulation(AccuracyGuaranteed(schedule="bisect"), SimulatedModel(knee=knee))
    assert bisect_rounds <= paper_rounds / 2
    # Both end at the accuracy knee: within 2 points of the baseline's size.
    assert bisect_kept - paper_kept <= 0.02
    assert bisect_kept >= knee - 0.02 - 1e-9 and paper_kept >= knee - 0.02 - 1e-9


def test_bisect_with_no_rollbacks_stops_at_the_first_failure():
    decisions = drive(bisect(max_rollbacks=0), BASELINE, [(OK, 900, 1), (BAD, 300, 1)])
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 1
    assert "max_rollbacks=0 allows no retry" in decisions[-1].reason


def test_bisect_walks_down_a_threshold_cliff_without_spending_retries():
    # Measured on vgg_small: rounds 1-3 prune nothing, T=0.7 fails, and every
    # T in (0.3, 0.5] prunes the same capped half of the largest group and
    # fails by 0.1 point. Repeats of that failure (no retraining) must not
    # exhaust round 3: the search keeps lowering the ceiling until a T just
    # above 0.3 prunes less and passes.
    same, cliff = (OK, 1000, 1), (0.919, 742, 1)
    script = [same, same, same, (0.91, 488, 1), cliff, cliff, cliff, (0.925, 900, 1)]
    policy = bisect(max_rollbacks=2, size_tolerance=None)  # bisection on T alone
    decisions = drive(policy, BASELINE, script)
    assert thresholds(decisions[4:9]) == pytest.approx([0.5, 0.4, 0.35, 0.325, 0.3375])
    assert [d.action for d in decisions[4:9]] == ["rollback"] * 4 + ["prune"]
    assert policy.exhausted_rounds == [] and policy.history[-1].params == 900


def test_bisect_retest_that_prunes_nothing_and_fails_ends_the_run_instead_of_looping():
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 400, 1), (OK, 800, 1), (BAD, 800, 1)] + [(BAD, 800, 1)] * 5
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    decisions = drive(policy, BASELINE, script)
    # Round 5 retries the old ceiling 0.25 on round 4's model, prunes nothing
    # and fails: no T is left between 0.25 and the ceiling, so the run stops.
    assert len(decisions) == 6 and decisions[-1].action == "stop" and decisions[-1].best_round == 4
    assert "nothing was pruned and the bracket T in [0.25, 0.25]" in decisions[-1].reason


@pytest.mark.parametrize("knee", [0.7, 0.6, 0.45, 0.35, 0.25, 0.15])
@pytest.mark.parametrize("initial_threshold", [0.0, 0.5, 2.0])
def test_bisect_never_runs_to_max_rounds_on_a_simulated_model(knee, initial_threshold):
    policy = AccuracyGuaranteed(schedule="bisect", initial_threshold=initial_threshold)
    rounds, kept = run_simulation(policy, SimulatedModel(knee=knee))
    assert rounds <= 16 and "max_rounds" not in policy.last_decision.reason
    assert kept <= max(knee, 0.2) + 0.06  # within 6 points of the smallest acceptable size


def test_bisect_rounds_that_prune_nothing_inside_a_bracket_do_not_converge_the_run():
    # Measured on vgg_small: after round 8 passed at T=0.325 below the ceiling
    # 0.35, rounds at 0.3375 and 0.34375 pruned nothing and the re-test of
    # 0.35 pruned nothing either; the patience rule must not end the run there.
    same = (OK, 880, 1)
    script = [(OK, 1000, 1), (OK, 1000, 1), (OK, 1000, 1), (BAD, 488, 1), (BAD, 742, 1), (BAD, 742, 1),
              (BAD, 742, 1), same, same, same, same, (OK, 800, 1)]
    policy = bisect(patience=3, size_tolerance=None)  # bisection on T alone
    decisions = drive(policy, BASELINE, script)
    assert thresholds(decisions[8:13]) == pytest.approx([0.3375, 0.34375, 0.35, 0.375, 0.425])
    assert [d.action for d in decisions[8:13]] == ["prune"] * 5
    assert policy.history[-1].params == 800


def test_start_takes_an_explicit_first_threshold_that_bisection_brackets_from():
    policy = bisect(initial_threshold=0.1)
    decisions = [policy.start(BASELINE, initial_threshold=0.8)]
    assert decisions[0].threshold == pytest.approx(0.8)
    # The configuration is unchanged (a resumed run builds the same policy).
    assert policy.to_config()["initial_threshold"] == pytest.approx(0.1)
    decisions += drive_on(policy, [(BAD, 300, 1)])
    assert (decisions[1].action, decisions[1].rollback_to) == ("rollback", 0)
    assert decisions[1].threshold == pytest.approx(0.4)  # halfway between 0 and 0.8


def test_an_explicit_first_threshold_survives_a_state_round_trip():
    policy = AccuracyGuaranteed(step=0.1, initial_threshold=0.0)
    policy.start(BASELINE, initial_threshold=0.5)
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    # The paper's search retries a failure from the baseline at the first threshold.
    ours = drive_on(policy, [(BAD, 300, 1)])
    theirs = drive_on(restored, [(BAD, 300, 1)])
    assert thresholds(ours) == thresholds(theirs)
    assert ours[0].action == "rollback" and ours[0].threshold == pytest.approx(0.5)


@pytest.mark.parametrize("value", [-0.5, "high"])
def test_a_bad_explicit_first_threshold_is_refused(value):
    with pytest.raises(ConfigurationError, match="initial_threshold"):
        bisect().start(BASELINE, initial_threshold=value)


# ----------------------------------------------------- trimmed retries (size bracket)
def test_bisect_trims_the_failing_threshold_when_a_smaller_t_repeats_the_failure():
    # As on resnet20: from round 1's model every T above its own prunes 70%
    # of the params and fails (round 3 repeats round 2's masks). Bisecting T
    # cannot help; the size bracket [10%, 70%] is open, so the search retries
    # the failing T trimmed to 40%, then bisects the size.
    cliff = (BAD, 300, 1)
    script = [(OK, 900, 1), cliff, cliff, (OK, 600, 1), (BAD, 450, 1), (OK, 525, 1), (OK, 490, 1),
              (BAD, 470, 1)]
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2, size_tolerance=0.02)
    decisions = [policy.start(BASELINE)]
    limits = []
    for row in script:
        limits.append(policy.reduction_limit)
        decisions += drive_on(policy, [row])
    assert thresholds(decisions[:5]) == pytest.approx([0.2, 0.3, 0.25, 0.25, 0.25])
    assert limits == pytest.approx([None, None, None, 0.4, 0.55, 0.475, 0.5125, 0.53], abs=1e-12)
    assert (decisions[3].action, decisions[3].rollback_to) == ("rollback", 1)
    assert decisions[3].reason == (
        "accuracy drop 13.00% > 1.00%: roll back to round 1, T=0.25 trimmed to a params reduction "
        "of at most 40.00%, halfway between this model's 10.00% and the failing 70.00% "
        "(a smaller T removed as much as a failing one)"
    )
    assert decisions[4].reason.startswith("accuracy drop 0.00% <= 1.00%: T=0.25 trimmed to a params")
    # Round 8 fails at 53% from round 7's 51%: within 2 points, and round 7
    # has failed itself, so the run stops with round 7 (490 params).
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 7
    assert "within size_tolerance=2.00%: converged" in decisions[-1].reason
    assert policy.reduction_limit is None


def test_bisect_trims_when_the_threshold_bracket_closes_on_distinct_failures():
    # Failures of different sizes (no repeat) close the T bracket first.
    script = [(OK, 900, 1), (BAD, 300, 1), (BAD, 350, 1), (BAD, 380, 1)]
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    decisions = drive(policy, BASELINE, script)
    assert thresholds(decisions) == pytest.approx([0.2, 0.3, 0.25, 0.225, 0.225])
    assert policy.reduction_limit == pytest.approx((0.1 + 0.62) / 2)
    assert decisions[-1].reason.endswith("(every T in the bracket prunes too much from this model)")


def test_bisect_without_a_size_tolerance_stops_at_a_closed_threshold_bracket():
    cliff = (BAD, 300, 1)
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2, size_tolerance=None)
    decisions = drive(policy, BASELINE, [(OK, 900, 1), cliff, cliff, cliff])
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 1
    assert "within threshold_tolerance=0.03: converged" in decisions[-1].reason
    assert "size_tolerance" not in decisions[-1].reason


def test_a_trimmed_retry_that_prunes_nothing_and_fails_ends_the_run():
    cliff = (BAD, 300, 1)
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    decisions = drive(policy, BASELINE, [(OK, 900, 1), cliff, cliff, (BAD, 900, 1)])
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 1
    assert "nothing was pruned and the bracket T in [0.25, 0.25]" in decisions[-1].reason


def test_a_trimmed_retry_that_passes_well_short_of_its_limit_drops_the_stale_ceiling():
    # Limit 40%, reached 20%: the T ceiling pruned less from this model than
    # the trim allowed, so it passed untrimmed and T grows again.
    cliff = (BAD, 300, 1)
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    decisions = drive(policy, BASELINE, [(OK, 900, 1), cliff, cliff, (OK, 800, 1)])
    assert decisions[-1].action == "prune" and decisions[-1].threshold == pytest.approx(0.3)
    assert policy.state_dict()["lineage"][-1]["ceiling"] is None
    assert policy.reduction_limit is None
    # Reached 39.5% of a 40% limit: the trim took, the ceiling stays.
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    drive(policy, BASELINE, [(OK, 900, 1), cliff, cliff, (OK, 605, 1)])
    assert policy.state_dict()["lineage"][-1]["ceiling"] == pytest.approx(0.25)


def test_trimmed_rounds_that_ignore_the_limit_are_bounded_by_max_rollbacks():
    # A hand-written loop that does not pass `reduction_limit` to the pruning
    # step repeats the same failure; each repeat counts against the retries.
    cliff = (BAD, 300, 1)
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2, max_rollbacks=3)
    decisions = drive(policy, BASELINE, [(OK, 900, 1)] + [cliff] * 20)
    assert decisions[-1].action == "stop" and decisions[-1].best_round == 1
    assert len(decisions) <= 10 and "already retried 3 times" in decisions[-1].reason


def test_the_trim_limit_survives_a_state_round_trip():
    cliff = (BAD, 300, 1)
    policy = bisect(threshold_tolerance=0.03, initial_threshold=0.2)
    drive(policy, BASELINE, [(OK, 900, 1), cliff, cliff])
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.reduction_limit == pytest.approx(0.4) == policy.reduction_limit
    assert drive_on(restored, [(OK, 600, 1)]) == drive_on(policy, [(OK, 600, 1)])


def test_a_target_policy_takes_the_smaller_of_its_window_and_a_trim():
    policy = ParamsTarget(reduction=0.5, schedule="bisect", step=0.2)
    policy.start(BASELINE)
    assert policy.reduction_limit == pytest.approx(0.53)
    policy._search.limit = 0.4  # as a trimmed retry sets it
    assert policy.reduction_limit == pytest.approx(0.4)


@pytest.mark.parametrize("knee", [0.45, 0.35, 0.25])
def test_trimmed_retries_reach_the_knee_of_a_model_whose_scores_drift(knee):
    plain = AccuracyGuaranteed(schedule="bisect", initial_threshold=0.5, size_tolerance=None)
    _, plain_kept = run_simulation(plain, DriftingModel(knee=knee))
    trimmed = AccuracyGuaranteed(schedule="bisect", initial_threshold=0.5)
    rounds, trimmed_kept = run_simulation(trimmed, DriftingModel(knee=knee))
    smallest = knee - 0.02  # the smallest size within the 1-point bound (slope 0.5)
    assert trimmed_kept >= smallest - 1e-9 and trimmed_kept <= smallest + 0.03
    assert plain_kept - trimmed_kept >= 0.04  # T alone stops a whole jump above
    assert rounds <= 25 and "max_rounds" not in trimmed.last_decision.reason


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, "wide"])
def test_a_bad_size_tolerance_is_refused(value):
    with pytest.raises(ConfigurationError, match="size_tolerance"):
        bisect(size_tolerance=value)


def test_the_resnet20_run_goes_to_a_trimmed_retry_after_its_first_failure_from_the_best_round():
    # FLOPs removed per round of the run that motivated trimming (2026-12-07,
    # FLOPs-weighted, 4-point bound): T=1.9 failed at 84.7% from round 4,
    # T=1.5 passed at 77.4%, T=1.7 from that model failed at 90.9%: more than
    # the larger T did from round 4. Bisecting T further tried 1.6 (90.7%),
    # 1.55 ...; now the next round is T=1.7 trimmed to the size bracket's middle.
    removed = [0.007, 0.009, 0.189, 0.526, 0.847, 0.774, 0.909]
    ok = [True, True, True, True, False, True, False]
    policy = AccuracyGuaranteed(max_accuracy_drop=0.04, minimize="flops", schedule="bisect", step=0.1)
    decisions = [policy.start(BASELINE, initial_threshold=0.4)]
    for passed, reduction in zip(ok, removed):
        flops = round(100_000 * (1 - reduction))
        decisions += drive_on(policy, [(OK if passed else BAD, flops // 100, flops)])
    assert thresholds(decisions) == pytest.approx([0.4, 0.5, 0.7, 1.1, 1.9, 1.5, 1.7, 1.7])
    assert (decisions[-1].action, decisions[-1].rollback_to) == ("rollback", 6)
    assert policy.reduction_limit == pytest.approx((0.774 + 0.847) / 2)
