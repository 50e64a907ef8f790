"""Policies on scripted round results: no Keras, milliseconds per test."""

import doctest
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tf_asap.pruning import policies
from tf_asap.pruning.policies import accuracy, base, results, targets
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import (
    AccuracyGuaranteed,
    Decision,
    FlopsTarget,
    ParamsTarget,
    Policy,
    RoundResult,
    policy_from_state,
)
from tests.pruning.scripted import BASELINE, drive, drive_on, thresholds


# ----------------------------------------------------------- Figure 4 pattern
def test_figure4_pattern_rolls_back_to_round_24_with_half_step_and_converges():
    baseline = RoundResult(0, 0.0, 0.93, 850_000, 125_000_000)
    script = []
    for r in range(1, 25):  # rounds 1-24: acceptable, the model shrinks
        script.append((0.93 - 0.0003 * r, 850_000 - 29_750 * r, 125_000_000 - 4_000_000 * r))
    script.append((0.915, 100_000, 20_000_000))  # round 25: drop 1.5% > 1%
    params = 136_000
    for r in range(26, 40):
        # Rounds 26-36 still shrink by 0.5%; rounds 37-39 by 0.05% (converged).
        params -= params // 200 if r <= 36 else params // 2000
        script.append((0.924, params, params * 100))

    policy = AccuracyGuaranteed(max_accuracy_drop=0.01, step=0.1)
    decisions = drive(policy, baseline, script)

    # Round r prunes with T = 0.1 * (r - 1) until round 24.
    assert thresholds(decisions[:25]) == pytest.approx([0.1 * r for r in range(25)])
    assert all(d.action == "prune" for d in decisions[:25])
    rollback = decisions[25]
    assert rollback.action == "rollback"
    assert rollback.rollback_to == 24
    assert rollback.threshold == pytest.approx(2.3 + 0.05)
    assert rollback.reason == (
        "accuracy drop 1.50% > 1.00%: roll back to round 24, T=2.35, step 0.05"
    )
    # The halved step carries on after the successful retry (Algorithm 2, line 12).
    assert thresholds(decisions[26:39]) == pytest.approx(
        [2.35 + 0.05 * (r - 25) for r in range(26, 39)]
    )
    final = decisions[-1]
    assert len(decisions) == 40  # start + rounds 1-39
    assert final.action == "stop"
    assert final.best_round == 39
    assert "over 3 acceptable rounds: converged" in final.reason
    assert policy.next_round is None


# ------------------------------------------------------------ target policies
def test_params_target_overshoots_rolls_back_then_meets_target():
    reductions = [0.05, 0.20, 0.35, 0.50, 0.62, 0.80, 0.68, 0.715]
    script = [(0.9, round(1000 * (1 - x)), 100_000) for x in reductions]
    policy = ParamsTarget(reduction=0.7, tolerance=0.03, step=0.2)
    decisions = drive(policy, BASELINE, script)

    assert [d.action for d in decisions] == ["prune"] * 6 + ["rollback", "prune", "stop"]
    assert thresholds(decisions[:6]) == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert decisions[6].rollback_to == 5
    assert decisions[6].threshold == pytest.approx(0.9)
    assert decisions[7].threshold == pytest.approx(1.0)  # 0.9 + the halved step
    assert decisions[8].best_round == 8
    assert decisions[8].reason.startswith(
        "params reduction 71.50% within [70.00%, 73.00%]: target met"
    )


def test_flops_target_compares_flops_with_flops_not_params():
    # Params fall far faster than FLOPs; judged on params, rounds 3-5 would overshoot.
    rows = [(0.1, 0.3), (0.3, 0.6), (0.45, 0.7), (0.7, 0.9), (0.52, 0.9)]
    script = [(0.9, round(1000 * (1 - p)), round(100_000 * (1 - f))) for f, p in rows]
    policy = FlopsTarget(reduction=0.5, tolerance=0.03, step=0.2)
    decisions = drive(policy, BASELINE, script)

    assert [d.action for d in decisions] == ["prune"] * 4 + ["rollback", "stop"]
    assert decisions[4].rollback_to == 3
    assert decisions[4].threshold == pytest.approx(0.4 + 0.1)
    assert decisions[5].best_round == 5
    assert "flops reduction 52.00%" in decisions[5].reason


def test_target_not_met_at_max_rounds_picks_closest_acceptable_round():
    script = [(0.92, 800, 1), (0.90, 500, 1), (0.85, 100, 1)]  # 3 overshoots
    policy = ParamsTarget(reduction=0.7, max_rounds=3)
    decisions = drive(policy, BASELINE, script)

    assert decisions[-1].action == "stop"
    assert decisions[-1].best_round == 2
    assert decisions[-1].reason.startswith("reached max_rounds=3; target not met: best round 2")


def test_target_policy_stops_when_size_stalls_below_target():
    script = [(0.9, 900, 1), (0.9, 800, 1), (0.9, 800, 1), (0.9, 800, 1), (0.9, 800, 1)]
    policy = ParamsTarget(reduction=0.7, patience=3)
    decisions = drive(policy, BASELINE, script)

    assert len(decisions) == 6
    assert decisions[-1].action == "stop"
    assert "converged; target not met: best round 2 " in decisions[-1].reason


# ------------------------------------------------------- the convergence rule
def test_convergence_rule_stops_after_patience_unchanged_rounds():
    script = [(0.93, 900, 1), (0.93, 800, 1), (0.93, 800, 1), (0.93, 800, 1), (0.93, 800, 1)]
    decisions = drive(AccuracyGuaranteed(patience=3), BASELINE, script)

    assert [d.action for d in decisions] == ["prune"] * 5 + ["stop"]
    assert decisions[-1].best_round == 2  # same size, same accuracy: the earliest


def test_size_change_within_one_tenth_percent_counts_as_unchanged():
    baseline = RoundResult(0, 0.0, 0.93, 200_000, 1)
    # Changes after round 2: exactly 0.1%, then 0.099%.
    script = [(0.93, 100_000, 1), (0.93, 90_000, 1), (0.93, 89_910, 1), (0.93, 89_821, 1)]
    decisions = drive(AccuracyGuaranteed(patience=2), baseline, script)
    assert decisions[-1].action == "stop"
    assert decisions[-1].best_round == 4


def test_size_change_above_one_tenth_percent_resets_the_streak():
    baseline = RoundResult(0, 0.0, 0.93, 200_000, 1)
    # Changes after round 2: 0.1%, then 0.101%.
    script = [(0.93, 100_000, 1), (0.93, 90_000, 1), (0.93, 89_910, 1), (0.93, 89_819, 1)]
    decisions = drive(AccuracyGuaranteed(patience=2), baseline, script)
    assert decisions[-1].action == "prune"


def test_unchanged_rounds_before_pruning_starts_do_not_end_the_run():
    # Round 1 removes dead filters; rounds 2-5 prune nothing while T is still
    # below every live filter's score; only after round 6 moves does the rule count.
    script = [(0.93, 900, 1)] + [(0.93, 900, 1)] * 4 + [(0.93, 700, 1)] + [(0.93, 700, 1)] * 3
    decisions = drive(AccuracyGuaranteed(patience=3), BASELINE, script)

    assert [d.action for d in decisions[:9]] == ["prune"] * 9
    assert decisions[9].action == "stop"
    assert len(decisions) == 10


def test_minimize_flops_watches_flops_for_convergence():
    script = [(0.93, 900, 90_000), (0.93, 800, 80_000)] + [
        (0.93, 700 - 100 * i, 80_000) for i in range(3)
    ]
    decisions = drive(AccuracyGuaranteed(minimize="flops", patience=3), BASELINE, script)
    assert decisions[-1].action == "stop"
    assert decisions[-1].reason.startswith("flops changed by at most 0.10% over 3")


# ------------------------------------------------------------------ rollbacks
def test_retry_failing_with_the_same_size_is_an_ordinary_halving_rollback():
    ok = (0.93, 900, 1)
    script = [ok, (0.93, 800, 1), (0.93, 700, 1), (0.80, 500, 1), (0.81, 500, 1)]
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=3)
    decisions = drive(policy, BASELINE, script)
    # Round 5 removes exactly what round 4 did (a threshold cliff): it counts
    # as the second retry from round 3, with the step halved again.
    assert [(d.rollback_to, d.threshold) for d in decisions[4:6]] == [
        (3, pytest.approx(0.25)), (3, pytest.approx(0.225)),
    ]
    assert policy.exhausted_rounds == []


def test_repeated_failure_names_the_failed_round_of_the_current_model():
    ok = (0.93, 900, 90)
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=3)
    drive(policy, BASELINE, [ok, (0.93, 800, 80), (0.80, 500, 50)])
    # Round 3 failed from round 2; round 4 retries from round 2.
    assert policy.next_round == 4
    earlier = policy.repeated_failure(500, 50)
    assert earlier is not None and earlier.round == 3 and earlier.accuracy == 0.80
    assert policy.repeated_failure(500, 51) is None  # another size: a new experiment
    assert policy.repeated_failure(600, 60) is None


def test_repeated_failure_forgets_failures_of_other_models():
    ok = (0.93, 900, 90)
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=3)
    # Round 3 fails from round 2; the retry (round 4) passes and becomes the
    # parent of round 5: round 3's failure was from another model.
    drive(policy, BASELINE, [ok, (0.93, 800, 80), (0.80, 500, 50), (0.93, 700, 70)])
    assert policy.next_round == 5
    assert policy.repeated_failure(500, 50) is None


def test_repeated_failure_survives_a_state_round_trip():
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=3)
    drive(policy, BASELINE, [(0.93, 900, 90), (0.80, 500, 50)])
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.repeated_failure(500, 50).round == 2


def test_repeated_failure_walks_back_past_exhausted_round():
    ok = (0.93, 900, 1)
    bad = [(0.80, 500, 1), (0.80, 550, 1), (0.80, 600, 1)]  # each retry removes less
    script = [ok, (0.93, 800, 1), (0.93, 700, 1), *bad, (0.93, 750, 1)]
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=2)
    decisions = drive(policy, BASELINE, script)

    retries = [(d.action, d.rollback_to, d.threshold) for d in decisions[4:7]]
    assert retries == [
        ("rollback", 3, pytest.approx(0.25)),
        ("rollback", 3, pytest.approx(0.225)),
        ("rollback", 2, pytest.approx(0.15)),  # round 3 exhausted: T[2] + 0.1 / 2
    ]
    assert "(round 3 already retried 2 times, so further back)" in decisions[6].reason
    assert decisions[7].action == "prune"
    assert decisions[7].threshold == pytest.approx(0.2)  # 0.15 + the halved step
    assert policy.exhausted_rounds == [3]


def test_exhausting_the_baseline_stops_with_best_acceptable_round():
    bad = (0.80, 500, 1)
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=1)
    decisions = drive(policy, BASELINE, [(0.93, 900, 1), bad, bad, bad, bad])

    assert [(d.action, d.rollback_to) for d in decisions] == [
        ("prune", None),
        ("prune", None),
        ("rollback", 1),
        ("rollback", 0),
        ("stop", None),
    ]
    assert decisions[3].threshold == 0.0  # a retry from the baseline restarts at T[1]
    assert policy.step == pytest.approx(0.05)
    assert decisions[4].best_round == 1
    assert "the baseline was already retried 1 time;" in decisions[4].reason


def test_zero_max_rollbacks_stops_at_first_unacceptable_round():
    decisions = drive(
        AccuracyGuaranteed(max_rollbacks=0), BASELINE, [(0.93, 900, 1), (0.5, 100, 1)]
    )
    assert decisions[-1].action == "stop"
    assert decisions[-1].best_round == 1


def test_accuracy_drop_exactly_at_the_bound_is_acceptable():
    policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
    policy.start(RoundResult(0, 0.0, 0.99, 1000, 1))
    assert policy.acceptable(RoundResult(1, 0.0, 0.98, 900, 1))
    assert not policy.acceptable(RoundResult(1, 0.0, 0.9799, 900, 1))


# ----------------------------------------------------- max_rounds, best round
def test_max_rounds_stops_even_after_an_unacceptable_round():
    script = [(0.93, 900, 1), (0.93, 800, 1), (0.5, 100, 1)]
    decisions = drive(AccuracyGuaranteed(max_rounds=3), BASELINE, script)

    assert [d.action for d in decisions] == ["prune", "prune", "prune", "stop"]
    assert decisions[-1].best_round == 2
    assert decisions[-1].reason.startswith("reached max_rounds=3; best round 2")


def test_best_round_is_smallest_acceptable_model_ties_to_higher_accuracy():
    script = [(0.93, 800, 1), (0.925, 700, 1), (0.928, 700, 1), (0.90, 500, 1)]
    policy = AccuracyGuaranteed(max_rounds=4)
    decisions = drive(policy, BASELINE, script)

    assert decisions[-1].best_round == 3  # round 4 is smaller but unacceptable
    assert policy.best_round == 3


def test_minimize_flops_picks_fewest_flops_not_fewest_params():
    script = [(0.93, 500, 90_000), (0.93, 900, 60_000)]
    policy = AccuracyGuaranteed(minimize="flops", max_rounds=2)
    assert drive(policy, BASELINE, script)[-1].best_round == 2


# ----------------------------------------------------------------- protocol
def test_observe_before_start_raises():
    with pytest.raises(ConfigurationError, match="before start"):
        AccuracyGuaranteed().observe(RoundResult(1, 0.0, 0.9, 10, 10))


def test_observe_with_wrong_round_raises():
    policy = AccuracyGuaranteed()
    policy.start(BASELINE)
    with pytest.raises(ConfigurationError, match="asked for round 1 .* round 2"):
        policy.observe(RoundResult(2, 0.0, 0.9, 10, 10))


def test_observe_with_wrong_threshold_raises():
    policy = AccuracyGuaranteed()
    policy.start(BASELINE)
    policy.observe(RoundResult(1, 0.0, 0.93, 900, 1))
    with pytest.raises(ConfigurationError, match="T=0.1 but reports T=0.3"):
        policy.observe(RoundResult(2, 0.3, 0.93, 800, 1))


def test_observe_after_stop_raises():
    policy = AccuracyGuaranteed(max_rounds=1)
    drive(policy, BASELINE, [(0.93, 900, 1)])
    with pytest.raises(ConfigurationError, match="after the policy stopped"):
        policy.observe(RoundResult(2, 0.1, 0.93, 800, 1))


def test_start_twice_raises():
    policy = AccuracyGuaranteed()
    policy.start(BASELINE)
    with pytest.raises(ConfigurationError, match="already started"):
        policy.start(BASELINE)


@pytest.mark.parametrize(
    "baseline",
    [RoundResult(1, 0.0, 0.9, 10, 10), RoundResult(0, 0.0, 0.9, 0, 10)],
    ids=["not-round-0", "no-params"],
)
def test_start_rejects_unusable_baseline(baseline):
    with pytest.raises(ConfigurationError, match="baseline"):
        AccuracyGuaranteed().start(baseline)


@pytest.mark.parametrize(
    "field, value",
    [("accuracy", 93.0), ("accuracy", -0.1), ("params", -1), ("round", 1.5),
     ("threshold", float("nan")), ("flops", True)],
)
def test_round_result_rejects_out_of_range_values(field, value):
    fields = {"round": 1, "threshold": 0.0, "accuracy": 0.9, "params": 10, "flops": 10}
    fields[field] = value
    with pytest.raises(ConfigurationError, match=f"`{field}`.*{value!r}"):
        RoundResult(**fields)


def test_round_result_normalises_numbers_to_python_types():
    result = RoundResult(1, 1, 1, 10.0, 20)
    assert type(result.threshold) is float and type(result.params) is int


def test_decision_rejects_unknown_action():
    with pytest.raises(ConfigurationError, match="action"):
        Decision("prune harder", 0.1, None, None, "")


@pytest.mark.parametrize(
    "policy_class, name, value",
    [
        (AccuracyGuaranteed, "max_accuracy_drop", -0.01),
        (AccuracyGuaranteed, "max_accuracy_drop", 1.0),
        (AccuracyGuaranteed, "max_accuracy_drop", float("nan")),
        (AccuracyGuaranteed, "minimize", "size"),
        (AccuracyGuaranteed, "step", 0.0),
        (AccuracyGuaranteed, "step", -0.1),
        (AccuracyGuaranteed, "step", float("inf")),
        (AccuracyGuaranteed, "initial_threshold", -0.5),
        (AccuracyGuaranteed, "patience", 0),
        (AccuracyGuaranteed, "patience", 1.5),
        (AccuracyGuaranteed, "patience", True),
        (AccuracyGuaranteed, "min_relative_change", 1.0),
        (AccuracyGuaranteed, "max_rollbacks", -1),
        (AccuracyGuaranteed, "max_rounds", 0),
        (ParamsTarget, "reduction", 0.0),
        (ParamsTarget, "reduction", 1.0),
        (ParamsTarget, "reduction", 70),
        (ParamsTarget, "tolerance", -0.01),
        (FlopsTarget, "reduction", -0.5),
        (FlopsTarget, "step", "0.2"),
    ],
)
def test_bad_argument_raises_configuration_error_naming_it(policy_class, name, value):
    with pytest.raises(ConfigurationError) as error:
        policy_class(**{name: value})
    assert f"`{name}`" in str(error.value)
    assert repr(value) in str(error.value)


def test_configuration_error_is_a_value_error():
    with pytest.raises(ValueError):
        ParamsTarget(reduction=1.5)


@pytest.mark.parametrize("policy_class", [AccuracyGuaranteed, ParamsTarget, FlopsTarget])
def test_to_config_rebuilds_an_equal_policy(policy_class):
    policy = policy_class(step=0.3, patience=5, max_rounds=20)
    assert policy_class(**policy.to_config()).to_config() == policy.to_config()


# -------------------------------------------------------------- persistence
def test_from_state_on_wrong_class_raises():
    policy = ParamsTarget()
    policy.start(BASELINE)
    with pytest.raises(ConfigurationError, match="belongs to a ParamsTarget"):
        FlopsTarget.from_state(policy.state_dict())


@pytest.mark.parametrize("state", [{"kind": "Adam"}, {"kind": ["list"]}, [1, 2]])
def test_from_state_rejects_non_policy_state(state):
    with pytest.raises(ConfigurationError, match="kind"):
        policy_from_state(state)


def test_from_state_rejects_truncated_state():
    state = AccuracyGuaranteed().state_dict()
    del state["lineage"]
    with pytest.raises(ConfigurationError, match="not a complete"):
        Policy.from_state(state)


def test_restored_stopped_policy_keeps_its_result():
    policy = AccuracyGuaranteed(max_rounds=2)
    drive(policy, BASELINE, [(0.93, 900, 1), (0.93, 800, 1)])
    restored = policy_from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.best_round == 2
    assert restored.last_decision == policy.last_decision
    assert restored.history == policy.history


POLICIES = [
    lambda: AccuracyGuaranteed(max_accuracy_drop=0.01, max_rollbacks=2, max_rounds=30),
    lambda: AccuracyGuaranteed(minimize="flops", patience=2, max_rounds=30),
    lambda: ParamsTarget(reduction=0.6, tolerance=0.02, max_rounds=30),
    lambda: FlopsTarget(reduction=0.5, tolerance=0.0, max_rounds=30),
    lambda: AccuracyGuaranteed(max_metric_drop=0.01, metric="loss", mode="min", max_rounds=30),
    lambda: AccuracyGuaranteed(schedule="bisect", initial_threshold=0.3, max_rounds=30),
    lambda: ParamsTarget(reduction=0.6, metric="loss", mode="min", schedule="bisect", max_rounds=30),
]
ROWS = st.tuples(
    st.sampled_from([0.935, 0.93, 0.925, 0.92, 0.915, 0.9]),
    st.sampled_from([1000, 950, 900, 800, 700, 600, 500, 420, 400, 399, 100]),
    st.sampled_from([100_000, 90_000, 60_000, 51_000, 50_000, 49_000, 30_000]),
)


@settings(max_examples=150, deadline=None)
@given(
    make_policy=st.sampled_from(POLICIES),
    script=st.lists(ROWS, min_size=1, max_size=40),
    split=st.integers(0, 40),
)
def test_restored_policy_makes_identical_decisions(make_policy, script, split):
    original = make_policy()
    expected = drive(original, BASELINE, script)

    policy = make_policy()
    decisions = drive(policy, BASELINE, script[:split])
    if decisions[-1].action != "stop":
        policy = policy_from_state(json.loads(json.dumps(policy.state_dict())))
        assert policy.last_decision == decisions[-1]
        decisions += drive_on(policy, script[split:])
    assert decisions == expected
    assert policy.state_dict() == original.state_dict()


@settings(max_examples=200, deadline=None)
@given(make_policy=st.sampled_from(POLICIES), script=st.lists(ROWS, min_size=60, max_size=60))
def test_any_run_stops_within_max_rounds_on_an_acceptable_round(make_policy, script):
    policy = make_policy()
    decisions = drive(policy, BASELINE, script)

    assert decisions[-1].action == "stop"
    assert len(decisions) - 1 <= policy.max_rounds
    history = policy.history
    assert policy.acceptable(history[decisions[-1].best_round])
    for previous, decision in zip(decisions, decisions[1:]):
        if decision.action == "rollback":
            assert policy.acceptable(history[decision.rollback_to])
            if "retraining noise" in decision.reason:
                # Nothing was pruned: noise, so T moves on by the same step.
                assert decision.threshold > previous.threshold
            else:
                # A retry is always more conservative than the round that failed.
                assert decision.threshold <= previous.threshold


def test_failed_round_that_pruned_nothing_raises_t_without_halving_the_step():
    policy = AccuracyGuaranteed(max_accuracy_drop=0.0, step=0.1)
    policy.start(RoundResult(0, 0.0, 0.80, 1000, 100_000))
    decision = policy.observe(RoundResult(1, 0.0, 0.797, 1000, 100_000))
    assert decision.action == "rollback" and decision.rollback_to == 0
    assert decision.threshold == pytest.approx(0.1)
    assert policy.step == pytest.approx(0.1)
    assert "retraining noise" in decision.reason
    # A failure that did prune something still rolls back with a halved step.
    decision = policy.observe(RoundResult(2, 0.1, 0.79, 900, 90_000))
    assert decision.action == "rollback" and decision.rollback_to == 0
    assert policy.step == pytest.approx(0.05)


@pytest.mark.parametrize(
    "module", [policies, results, base, accuracy, targets], ids=lambda m: m.__name__.rsplit(".", 1)[-1]
)
def test_docstring_examples_run(module):
    outcome = doctest.testmod(module, extraglobs=vars(policies))
    assert outcome.failed == 0 and (module is policies or outcome.attempted > 0)


def test_only_target_policies_limit_a_rounds_reduction():
    assert AccuracyGuaranteed().reduction_limit is None
    assert ParamsTarget(reduction=0.7, tolerance=0.03).reduction_limit == pytest.approx(0.73)
    assert FlopsTarget(reduction=0.5, tolerance=0.02).reduction_limit == pytest.approx(0.52)


def test_rounds_holding_the_exhausted_model_are_exhausted_with_it():
    # Rounds 2 and 3 prune nothing beyond round 1: the three hold one model.
    # Once round 3 is exhausted, retrying from round 2 or 1 would climb the
    # same thresholds to the same failures, so the policy goes back to round 0.
    same = (0.93, 900, 90)
    bad = [(0.80, 500, 50), (0.80, 550, 55), (0.80, 600, 60)]
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=2)
    decisions = drive(policy, BASELINE, [same, same, same, *bad])

    assert [(d.action, d.rollback_to) for d in decisions[4:7]] == [
        ("rollback", 3), ("rollback", 3), ("rollback", 0),
    ]
    assert decisions[6].threshold == 0.0 and policy.step == pytest.approx(0.05)
    assert policy.exhausted_rounds == [3, 2, 1]
    assert "(round 3 already retried 2 times and rounds 2, 1 before it hold the same " \
        "model, so further back)" in decisions[6].reason


def test_exhausted_model_that_is_still_the_baseline_stops_the_run():
    # Rounds 1-3 prune nothing at all: when round 3 is exhausted, so is the
    # baseline (the same model), and no smaller model has passed.
    same = (0.93, 1000, 100_000)
    bad = [(0.80, 500, 50), (0.80, 550, 55), (0.80, 600, 60)]
    policy = AccuracyGuaranteed(step=0.1, max_rollbacks=2)
    decisions = drive(policy, BASELINE, [same, same, same, *bad])

    assert decisions[-1].action == "stop"
    assert len(decisions) == 7
    assert decisions[-1].best_round == 0
    assert "round 3 still held the baseline's model and was already retried 2 times" \
        in decisions[-1].reason
    assert policy.exhausted_rounds == [3, 2, 1]


# ------------------------------------------------------------- step growth
def test_step_growth_doubles_a_halved_step_back_after_passing_rounds():
    ok = [(0.93, 900, 90), (0.93, 800, 80), (0.93, 700, 70)]
    script = [*ok, (0.80, 300, 30), (0.93, 650, 65), (0.93, 600, 60), (0.93, 550, 55),
              (0.93, 500, 50)]
    paper = drive(AccuracyGuaranteed(step=0.1), BASELINE, script)
    grown = drive(AccuracyGuaranteed(step=0.1, step_growth=2.0), BASELINE, script)
    # Round 4 fails: both retry from round 3 with T = 0.2 + 0.05.
    assert paper[4].threshold == grown[4].threshold == pytest.approx(0.25)
    # The paper keeps the halved step; growth doubles it back, capped at `step`.
    assert thresholds(paper[5:9]) == pytest.approx([0.3, 0.35, 0.4, 0.45])
    assert thresholds(grown[5:9]) == pytest.approx([0.35, 0.45, 0.55, 0.65])


def test_step_growth_ignores_rounds_that_prune_nothing():
    script = [(0.93, 900, 90), (0.80, 300, 30), (0.93, 900, 90), (0.93, 900, 90)]
    policy = AccuracyGuaranteed(step=0.1, step_growth=2.0)
    decisions = drive(policy, BASELINE, script)
    # After the rollback (step 0.05) rounds 3-4 change nothing: the step stays.
    assert policy.step == pytest.approx(0.05)
    assert decisions[-1].threshold == pytest.approx(0.05 + 0.05 * 2)  # rounds 3, 4: +0.05 each


@pytest.mark.parametrize("kind", [AccuracyGuaranteed, ParamsTarget, FlopsTarget])
def test_step_growth_round_trips_through_config_and_state(kind):
    options = {} if kind is AccuracyGuaranteed else {"reduction": 0.5}
    policy = kind(step_growth=1.5, **options)
    assert policy.to_config()["step_growth"] == 1.5
    policy.start(BASELINE)
    assert Policy.from_state(json.loads(json.dumps(policy.state_dict()))).step_growth == 1.5


@pytest.mark.parametrize("value", [0.5, 0.0, float("inf"), "2"])
def test_step_growth_below_one_or_not_a_number_is_refused(value):
    with pytest.raises(ConfigurationError, match="step_growth"):
        AccuracyGuaranteed(step_growth=value)
