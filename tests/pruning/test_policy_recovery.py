"""Early rejection of a round part-way through retraining; scripted, no Keras."""

import json

import pytest

from tf_asap.errors import ConfigurationError
from tf_asap.pruning.policies import AccuracyGuaranteed, ParamsTarget, Policy, RoundResult

BASELINE = RoundResult(0, 0.0, 0.90, 1000, 5000)  # with a 1% bound: accuracy >= 0.89


def started(**options):
    policy = AccuracyGuaranteed(max_accuracy_drop=0.01, **options)
    policy.start(BASELINE)
    return policy


def test_nothing_is_rejected_before_any_recovery_was_seen():
    assert started().early_reject(0.10, 1, 5) is False


def test_a_round_that_cannot_recover_to_the_bound_is_rejected():
    policy = started()
    policy.early_reject(0.85, 1, 3)
    policy.early_reject(0.87, 2, 3)  # +0.02 per epoch
    policy.observe(RoundResult(1, 0.0, 0.895, 900, 4000))  # +0.025 in the last epoch: the best
    assert policy.early_reject(0.83, 1, 3) is True  # 0.83 + 2 * 0.025 = 0.88 < 0.89
    assert policy.early_reject(0.845, 1, 3) is False  # 0.845 + 0.05 = 0.895


def test_within_a_round_consecutive_values_teach_the_gain():
    policy = started()
    assert policy.early_reject(0.80, 1, 4) is False
    assert policy.early_reject(0.83, 2, 4) is False  # +0.03: 0.83 + 2 * 0.03 reaches 0.89 exactly
    assert policy.early_reject(0.82, 3, 4) is True  # a loss teaches nothing: 0.82 + 0.03 < 0.89


def test_min_mode_projects_the_error_downwards():
    policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min")
    policy.start(RoundResult(0, 0.0, params=1000, flops=1, score=0.30))  # MAE <= 0.35 passes
    policy.early_reject(0.50, 1, 3)
    assert policy.early_reject(0.38, 2, 3) is False  # -0.12 per epoch: 0.26 reachable
    policy = AccuracyGuaranteed(max_metric_drop=0.05, metric="mae", mode="min")
    policy.start(RoundResult(0, 0.0, params=1000, flops=1, score=0.30))
    policy.early_reject(0.50, 1, 3)
    assert policy.early_reject(0.45, 2, 3) is True  # -0.05 per epoch: 0.40 at best


def test_target_policies_never_reject_early():
    policy = ParamsTarget(reduction=0.5)
    policy.start(BASELINE)
    policy.early_reject(0.85, 1, 3)
    assert policy.early_reject(0.20, 2, 3) is False


@pytest.mark.parametrize("done, total, name", [(0, 3, "epochs_done"), (4, 3, "epochs_done"),
                                               (1, 0, "epochs_total"), (True, 3, "epochs_done")])
def test_out_of_range_epochs_are_refused(done, total, name):
    with pytest.raises(ConfigurationError, match=f"`{name}`"):
        started().early_reject(0.9, done, total)


def test_early_reject_outside_a_run_is_refused():
    with pytest.raises(ConfigurationError, match="before start"):
        AccuracyGuaranteed().early_reject(0.9, 1, 3)
    policy = AccuracyGuaranteed(max_rounds=1)
    policy.start(BASELINE)
    policy.observe(RoundResult(1, 0.0, 0.9, 900, 1))
    with pytest.raises(ConfigurationError, match="after the policy stopped"):
        policy.early_reject(0.9, 1, 3)


def test_learned_recovery_survives_a_state_round_trip():
    policy = started()
    policy.early_reject(0.80, 1, 4)
    policy.early_reject(0.83, 2, 4)
    restored = Policy.from_state(json.loads(json.dumps(policy.state_dict())))
    assert restored.state_dict() == policy.state_dict()
    assert restored.early_reject(0.82, 3, 4) is policy.early_reject(0.82, 3, 4) is True
