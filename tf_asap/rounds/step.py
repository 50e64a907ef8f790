"""One pruning round's pieces, shared by `RoundController` and the `AdaptivePruning` callback.

A round (Algorithm 1, lines 5-9) scores the filters, turns the policy's
threshold into masks (`prune_filters`, Algorithm 3), retrains, and evaluates
(`evaluate_round`) on held-out validation data; the policy then decides.
`round_record` and `format_round_line` make the round log line and the
progress line both front doors print.
"""

from __future__ import annotations

import dataclasses
import datetime

import numpy as np

from tf_asap import defaults
from tf_asap.checks import check_fraction
from tf_asap.core.counting import count_cost
from tf_asap.core.masks import apply_masks, get_masks, mask_digest
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.importance import Criterion, get_criterion
from tf_asap.pruning.policies import Policy, RoundResult
from tf_asap.pruning.channel_counts import check_round_to
from tf_asap.pruning.thresholds import attention_reference, threshold_masks

__all__ = [
    "PruningStep",
    "check_max_fraction",
    "mask_rules",
    "check_policy",
    "criterion_name",
    "evaluate_metric",
    "evaluate_round",
    "format_round_line",
    "measure_threshold_reference",
    "policy_metric",
    "prune_filters",
    "read_metric",
    "repeated_round",
    "resolve_criterion",
    "round_record",
]


DEFAULT_MAX_FRACTION = defaults.MAX_FRACTION


def resolve_criterion(criterion):
    """Returns an importance criterion object from a name or an object.

    Args:
        criterion: A name known to `tf_asap.pruning.importance.get_criterion` (the
            default `"attention"` is the paper's mean activation), or an
            object with a `score(model, data) -> {group: scores}` method.

    Raises:
        ConfigurationError: For an unknown name or an object without `score`.
    """
    if isinstance(criterion, str):
        return get_criterion(criterion)
    if not callable(getattr(criterion, "score", None)):
        raise ConfigurationError(
            "criterion must be a name such as 'attention' or an object with a "
            f"score(model, data) method; received {criterion!r}."
        )
    return criterion


def check_policy(policy):
    """Raises `ConfigurationError` unless `policy` is a new tf_asap policy."""
    if not isinstance(policy, Policy):
        raise ConfigurationError(
            "policy must be a tf_asap.pruning.policies policy (AccuracyGuaranteed, "
            f"ParamsTarget or FlopsTarget); received {type(policy).__name__}."
        )
    if policy.history:
        raise ConfigurationError(
            "This policy has already been started. Pass a new policy; to "
            "continue an interrupted run, pass a new policy with the same "
            "arguments and the same run_dir."
        )


def check_max_fraction(max_fraction):
    """`max_fraction` checked: `None` (the paper's rule) or a share in `(0, 1]`."""
    if max_fraction is None:
        return None
    return check_fraction(
        "max_fraction", max_fraction, allow_zero=False,
        fix="Pass a share of a group's live channels such as 0.5, or None for the "
        "paper's rule (no cap).",
    )


def mask_rules(max_fraction, round_to):
    """The per-group rules every round's masks obey, checked, as `prune_filters` keywords.

    They are run settings: a resumed run must prune by the same rules.
    """
    return {"max_fraction": check_max_fraction(max_fraction), "round_to": check_round_to(round_to)}


def criterion_name(criterion):
    """A stable description of a criterion object for logs and manifests."""
    if isinstance(criterion, Criterion):
        return repr(criterion)  # name and options, e.g. ActivationAttention(power=1, ...)
    return getattr(criterion, "name", None) or type(criterion).__name__


@dataclasses.dataclass(frozen=True)
class PruningStep:
    """What one call of `prune_filters` did.

    Attributes:
        masks: `{group name: keep}` of every prunable group, as applied.
        removed: Channels this step pruned (live before, masked now).
    """

    masks: dict
    removed: int


def prune_filters(
    model, scores, threshold, objective, reference, max_reduction=None,
    max_fraction=DEFAULT_MAX_FRACTION, reduction_objective=None, round_to=None,
):
    """Sets the masks of one pruning round (Algorithm 1, line 5; Algorithm 3).

    The layer-aware thresholds of `tf_asap.pruning.thresholds.threshold_masks` decide
    which channels each group keeps at the global threshold `threshold`
    (relative units: a group's attention threshold is `threshold x reference
    x` its share of the remaining cost). Masks only shrink: a channel pruned
    in an earlier round stays pruned, and every group keeps at least its
    `min_filters` channels.

    Args:
        model: A model from `make_prunable`.
        scores: `{group name: array}` from the criterion.
        threshold: The global threshold `T` of this round.
        objective: `"params"` or `"flops"`: what the layer-aware thresholds
            weigh groups by.
        reference: The score scale `T` is relative to (see
            `measure_threshold_reference`).
        max_reduction: The policy's `reduction_limit`: a round that would
            remove more of the dense cost is trimmed back, the least
            confidently pruned filters first. Defaults to `None` (no limit).
        max_fraction: The largest fraction of a group's live channels one
            round may remove, passed to `threshold_masks`; `None` is the
            paper's rule (no cap). Defaults to `0.5`.
        reduction_objective: What `max_reduction` is a reduction of (the
            policy's objective). Defaults to `None`: `objective`.
        round_to: Every pruned group keeps a multiple of this many channels,
            passed to `threshold_masks`. Defaults to `None` (exact counts).

    Returns:
        A `PruningStep`.
    """
    before = get_masks(model)
    masks = threshold_masks(
        model, scores, threshold, objective=objective, reference=reference,
        max_reduction=max_reduction, max_fraction=max_fraction,
        reduction_objective=reduction_objective, round_to=round_to,
    )
    removed = sum(
        int(np.sum(before[name] & ~np.asarray(keep, bool))) for name, keep in masks.items()
    )
    if removed:
        apply_masks(model, masks)
    return PruningStep(masks, removed)


def measure_threshold_reference(scores, model, objective):
    """The attention scale that the relative threshold `T` multiplies.

    Measured once per run, on the first pruned round's scores (the unpruned
    model's), and kept: `T` then means the same in every round.

    Args:
        scores: `{group name: array}` of the first round.
        model: The model the scores are of.
        objective: `"params"` or `"flops"`.

    Returns:
        A positive float.
    """
    del model, objective  # The scale depends on the scores alone (see attention_reference).
    return float(attention_reference(scores))


def read_metric(logs, metric="accuracy"):
    """The value of `metric` in the results of `model.evaluate(..., return_dict=True)`.

    Args:
        logs: `{name: value}` from `evaluate`.
        metric: The metric's name. For `"accuracy"`, a single
            `*accuracy` entry (`sparse_categorical_accuracy`) is accepted
            too. Defaults to `"accuracy"`.

    Returns:
        A float.

    Raises:
        ConfigurationError: If the model was not compiled with that metric.
    """
    if metric in logs:
        return float(logs[metric])
    if metric == "accuracy":
        candidates = [key for key in logs if key.endswith("accuracy")]
        if len(candidates) == 1:
            return float(logs[candidates[0]])
    raise ConfigurationError(
        f"Evaluating the model gave the metrics {sorted(logs)}, but the policy "
        f"decides on '{metric}'. Compile the model with metrics=[{metric!r}] "
        "(or let tf_asap compile it), or give the policy one of the metrics above."
    )


def policy_metric(policy):
    """`(metric name, mode)` the policy decides on; `("accuracy", "max")` by default."""
    return getattr(policy, "metric", "accuracy"), getattr(policy, "mode", "max")


def evaluate_round(model, validation_data, round_number, threshold, metric="accuracy"):
    """Evaluates a model and measures its size: a round's `RoundResult`.

    Args:
        model: A compiled model from `make_prunable`.
        validation_data: Data `model.evaluate` accepts, with labels.
        round_number: The round this result belongs to.
        threshold: The threshold the round pruned with.
        metric: The quality metric's name in `evaluate`'s results (the
            policy's `metric`); its value becomes the result's `score`.
            Defaults to `"accuracy"`.

    Returns:
        `(RoundResult, Cost)`: the metric, effective params and FLOPs; and
        the full cost.

    Raises:
        ConfigurationError: If the model was not compiled with `metric`.
    """
    logs = model.evaluate(validation_data, verbose=0, return_dict=True)
    value = read_metric(logs, metric)
    if metric == "accuracy":
        value = min(max(value, 0.0), 1.0)
    cost = count_cost(model)
    result = RoundResult(
        round=round_number,
        threshold=float(threshold),
        score=value,
        params=cost.effective_params,
        flops=cost.effective_flops,
    )
    return result, cost


def evaluate_metric(model, data, metric="accuracy"):
    """`metric` of `model` on `data` (for held-out test data, reported only)."""
    return read_metric(model.evaluate(data, verbose=0, return_dict=True), metric)


def repeated_round(policy, records, model, round_number, threshold):
    """The result of a round that repeats an earlier failed round exactly, if it does.

    A round repeats an earlier one when it starts from the same model (the
    policy's current parent) and its masks are identical to the earlier
    round's (`mask_digest` in the round log). Retraining it would run the
    same experiment again, so its accuracy is taken from the earlier round.

    Args:
        policy: The policy about to be told the round's result.
        records: The round records logged so far (with `mask_digest`).
        model: The model, already pruned for this round.
        round_number: The round being run.
        threshold: The threshold it pruned with.

    Returns:
        `(RoundResult, Cost, earlier round number)`, or `None` when the round
        is new and must be retrained.
    """
    cost = count_cost(model)
    earlier = policy.repeated_failure(cost.effective_params, cost.effective_flops)
    if earlier is None:
        return None
    logged = next((r for r in records if r.get("round") == earlier.round), None)
    if logged is None or logged.get("mask_digest") != mask_digest(model):
        return None
    result = RoundResult(
        round=round_number,
        threshold=float(threshold),
        score=earlier.score,
        params=cost.effective_params,
        flops=cost.effective_flops,
    )
    return result, cost, earlier.round


def round_record(policy, result, decision, cost, **extra):
    """The log line of one round, shared by the controller and the callback.

    Args:
        policy: The policy that decided.
        result: The round's `RoundResult`.
        decision: The policy's `Decision` after the round.
        cost: The round's `Cost`.
        **extra: More fields (wall time, epochs...).

    Returns:
        A JSON-serialisable dict.
    """
    baseline = policy.baseline
    accuracy_drop = baseline.accuracy - result.accuracy
    record = {
        "round": result.round,
        "threshold": result.threshold,
        "step": policy.step,
        "accuracy": result.accuracy,
        "accuracy_drop": accuracy_drop,
        "params": result.params,
        "flops": result.flops,
        "dense_params": cost.params,
        "dense_flops": cost.flops,
        "params_left": result.params / baseline.params,
        "flops_left": result.flops / baseline.flops,
        "params_reduction": 1.0 - result.params / baseline.params,
        "flops_reduction": 1.0 - result.flops / baseline.flops,
        "acceptable": bool(policy.acceptable(result)),
        "decision": decision.action,
        "next_threshold": decision.threshold,
        "rollback_to": decision.rollback_to,
        "best_round": decision.best_round,
        "reason": decision.reason,
        "objective": policy.objective,
        "max_accuracy_drop": getattr(policy, "max_accuracy_drop", None),
        "target_reduction": getattr(policy, "reduction", None),
        "metric": getattr(policy, "metric", "accuracy"),
        "validation_" + getattr(policy, "metric", "accuracy"): result.accuracy,
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
    record.update(extra)
    return record


def format_round_line(record):
    """One progress line: round, T, accuracy drop, params and FLOPs left, decision."""
    decision = record["decision"]
    if decision == "rollback":
        decision = f"rollback to {record['rollback_to']}"
    elif decision == "stop":
        decision = f"stop (best round {record['best_round']})"
    return (
        f"round {record['round']:3d}  T={record['threshold']:<8.4g} "
        f"acc drop {100 * record['accuracy_drop']:+6.2f}%  "
        f"params left {100 * record['params_left']:5.1f}%  "
        f"FLOPs left {100 * record['flops_left']:5.1f}%  -> {decision}: {record['reason']}"
    )
