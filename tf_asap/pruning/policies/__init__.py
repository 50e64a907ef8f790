"""Adaptive pruning policies: when to prune harder, when to roll back, when to stop.

A policy implements one of the paper's adaptive pruning objectives (Section
3.2): Algorithm 2 (accuracy-guaranteed), Algorithm 4 (memory-constrained) and
Algorithm 5 (FLOPs-constrained, appendix A.3/A.4). Each is a pure Python state
machine with no Keras inside: it is told the unpruned baseline and the result
of every pruning round, and answers with a `Decision`: prune the next round
with global threshold `T`, restore an earlier round and then prune, or stop.
The round controller and the `fit()` callback execute those decisions.

The protocol, as the controller runs it (Algorithm 1):

```python
policy = AccuracyGuaranteed(max_accuracy_drop=0.01)
decision = policy.start(baseline)            # RoundResult of round 0
while decision.action != "stop":
    if decision.action == "rollback":
        restore_round(decision.rollback_to)  # weights, masks, optimizer
    result = prune_retrain_evaluate(round=policy.next_round,
                                    threshold=decision.threshold)
    # Optionally, after each retraining epoch:
    #     if policy.early_reject(metric_so_far, epochs_done, epochs_total): break
    decision = policy.observe(result)
model = load_round(decision.best_round)
```

Round numbers only grow: after a rollback to round 24 the next round is still
`policy.next_round` (26 after a failed round 25), pruned on top of round 24's
restored state. The controller must keep the saved state of the baseline and
of every acceptable round, since a policy may roll back to, or finish with,
any of them.

The unit of `T`. The paper's `T = 0.0, λ = 0.005` (Algorithm 2, line 3) are
absolute attention values, which only fit one model's activation scale (the
authors' own scripts pass `λ = 1.0`). Here `T` is relative: the thresholds
step multiplies it by a reference attention scale measured in the first round,
so that `T ≈ 1` means "a typical filter's score". The default steps below are
chosen in these units so that a run converges in roughly 10-25 rounds.

The modules, one job each:

- `results`: `RoundResult` (what a round reports) and `Decision` (the answer).
- `base`: `Policy`, the protocol, stop rules, metric direction, persistence.
- `search`: the paper's threshold search (`PaperSearch`, `schedule="paper"`).
- `bisection`: grow-then-bisect (`BisectSearch`, `schedule="bisect"`).
- `recovery`: the early-rejection rule for a round part-way through retraining.
- `accuracy`: `AccuracyGuaranteed` (Algorithm 2).
- `targets`: `ParamsTarget` and `FlopsTarget` (Algorithms 4 and 5).
"""

from tf_asap.pruning.policies.accuracy import AccuracyGuaranteed
from tf_asap.pruning.policies.base import Policy
from tf_asap.pruning.policies.results import Decision, RoundResult
from tf_asap.pruning.policies.targets import FlopsTarget, ParamsTarget

__all__ = [
    "AccuracyGuaranteed",
    "Decision",
    "FlopsTarget",
    "ParamsTarget",
    "Policy",
    "RoundResult",
    "policy_from_state",
]


def policy_from_state(state):
    """Rebuilds whichever policy `state` (from `Policy.state_dict()`) describes.

    Args:
        state: A dict returned by `state_dict()`, possibly after a JSON round
            trip.

    Returns:
        An `AccuracyGuaranteed`, `ParamsTarget` or `FlopsTarget` policy that
        continues where the saved one stopped.

    Raises:
        ConfigurationError: If `state` is not a policy state.
    """
    return Policy.from_state(state)
