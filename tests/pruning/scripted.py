"""Drives a policy with scripted round results, and a tiny simulated model to search on."""

import math

from tf_asap.pruning.policies import RoundResult

BASELINE = RoundResult(round=0, threshold=0.0, accuracy=0.93, params=1000, flops=100_000)


def drive(policy, baseline, script):
    """Feeds `(accuracy, params, flops)` rows as the rounds the policy asks for.

    Returns the decisions, the one from `start()` first; stops feeding at a stop.
    """
    decisions = [policy.start(baseline)]
    return decisions + drive_on(policy, script)


def drive_on(policy, script):
    """Continues a started policy with the remaining rows."""
    decisions = []
    for accuracy, params, flops in script:
        last = policy.last_decision
        if last.action == "stop":
            break
        result = RoundResult(policy.next_round, last.threshold, accuracy, params, flops)
        decisions.append(policy.observe(result))
    return decisions


def thresholds(decisions):
    return [d.threshold for d in decisions]


class SimulatedModel:
    """A model whose pruning is a pure function of `T`, to compare searches.

    A round with threshold `T` keeps `remaining(T) = 1 - 0.8 (1 - e^-T)` of
    the baseline's parameters, or fewer if its parent already kept fewer
    (pruned filters stay pruned). Accuracy is the baseline's until fewer than
    `knee` of the parameters remain, then falls by `slope` per unit of size.
    """

    def __init__(self, knee=0.35, slope=0.5, baseline_accuracy=0.9, params=100_000):
        self.knee, self.slope = knee, slope
        self.baseline = RoundResult(0, 0.0, baseline_accuracy, params, params * 10)
        self.kept = {0: 1.0}

    def result(self, round_number, threshold, parent, limit=None):
        kept = min(self.kept[parent], self.pruned_to(threshold, parent))
        if limit is not None:  # the pruning step gives filters back down to the limit
            kept = min(self.kept[parent], max(kept, 1.0 - limit))
        self.kept[round_number] = kept
        drop = max(self.knee - kept, 0.0) * self.slope
        params = round(self.baseline.params * kept)
        return RoundResult(round_number, threshold, self.baseline.accuracy - drop, params, params * 10)


    def pruned_to(self, threshold, parent):
        """The share of the baseline's params `threshold` keeps from the baseline's scores."""
        del parent
        return 1.0 - 0.8 * (1.0 - math.exp(-threshold))


class DriftingModel(SimulatedModel):
    """A `SimulatedModel` whose scores fall during retraining, as measured on `resnet20`.

    From any retrained (non-baseline) model every `T` prunes at least `jump`
    more of the baseline's parameters: the survivors' scores have fallen
    relative to the run's reference, so the threshold that passed last
    time already sweeps a block of filters, and no `T` reaches the sizes
    in between.
    """

    def __init__(self, jump=0.13, **options):
        super().__init__(**options)
        self.jump = jump

    def pruned_to(self, threshold, parent):
        kept = super().pruned_to(threshold, parent)
        return kept if parent == 0 else min(kept, self.kept[parent] - self.jump)


def run_simulation(policy, model):
    """Runs `policy` on `model` to its stop; returns `(rounds run, kept fraction of the best round)`."""
    decision = policy.start(model.baseline)
    parent = 0
    while decision.action != "stop":
        if decision.action == "rollback":
            parent = decision.rollback_to
        round_number = policy.next_round
        result = model.result(round_number, decision.threshold, parent, policy.reduction_limit)
        decision = policy.observe(result)
        if policy.acceptable(result) and decision.action != "rollback":
            parent = round_number
    return policy.history[-1].round, model.kept[decision.best_round]
