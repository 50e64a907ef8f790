"""A cheap first threshold for the bisecting search: a sensitivity scan before round 1.

Not in the paper, whose `T` starts at 0 and climbs by λ, one retraining per
step. Before round 1, the unpruned model is scored once and the candidate
masks of the thresholds `T = λ · 2^k` (`k = 0, 1, ..., 10`; λ is the
policy's step) are evaluated without any retraining on `scan_samples`
validation samples. The search starts at the largest `T` whose *untrained*
metric drop is at most `SCAN_DROP_FACTOR = 3` times the policy's bound: a
few epochs of retraining recover a drop of that size on the models we
measured, while a larger one usually fails the round. The scan stops at the
first `T` beyond that (masks only grow with `T`). When no candidate
qualifies, the policy's configured `initial_threshold` is kept.

Only the accuracy-guaranteed policy has a metric bound, and only
`schedule="bisect"` brackets from an arbitrary start, so the scan runs for
that pairing alone. The candidate masks are applied to the model to be
evaluated and the model's own masks are put back afterwards.
"""

from __future__ import annotations

import tensorflow as tf

from tf_asap import defaults
from tf_asap.core.counting import count_cost
from tf_asap.core.masks import apply_masks, get_masks
from tf_asap.inputs import DEFAULT_BATCH_SIZE
from tf_asap.pruning.thresholds import threshold_masks
from tf_asap.rounds.step import evaluate_metric

__all__ = ["DEFAULT_SCAN_SAMPLES", "SCAN_DROP_FACTOR", "scan_applies", "scan_thresholds"]

DEFAULT_SCAN_SAMPLES = defaults.SCAN_SAMPLES

SCAN_DROP_FACTOR = 3.0
"""The untrained drop a starting threshold may cost, in multiples of the bound."""

SCAN_DOUBLINGS = 10
"""Candidates `λ · 2^k` for `k = 0 .. SCAN_DOUBLINGS`."""


def scan_applies(policy, scan_samples):
    """Whether a scan sizes this run's first threshold (see the module docstring)."""
    return (
        scan_samples > 0
        and getattr(policy, "schedule", None) == "bisect"
        and getattr(policy, "max_metric_drop", None) is not None
    )


def _subset(validation, samples):
    """The first `samples` examples of a batched labelled dataset, batched again."""
    # One batch of `samples` examples, sliced again: a dataset of known size.
    first = next(iter(validation.unbatch().batch(samples)))
    return tf.data.Dataset.from_tensor_slices(first).batch(DEFAULT_BATCH_SIZE)


def scan_thresholds(model, policy, scores, reference, validation, *, objective, max_fraction,
                    samples=DEFAULT_SCAN_SAMPLES, round_to=None):
    """Evaluates the candidate thresholds on the unpruned model; returns the scan record.

    Args:
        model: The prunable, compiled model (its masks are restored on return).
        policy: The accuracy-guaranteed policy (its `initial_step`,
            `max_metric_drop`, `metric` and `mode` are read).
        scores: `{group: scores}` of the unpruned model.
        reference: The attention scale `T` is relative to.
        validation: The validation batches (labelled).
        objective: `"params"` or `"flops"`, as the rounds prune.
        max_fraction: The per-round cap, as the rounds prune.
        samples: Validation samples evaluated per candidate. Defaults to
            `512`.
        round_to: The channel multiple, as the rounds prune. Defaults to
            `None`.

    Returns:
        A dict: `samples`, the unpruned `baseline` metric on them, the
        `candidates` (`[{"threshold", "metric", "drop", "params_reduction"}]`,
        in order), the
        `limit` (`3 x` the bound) and the `chosen` threshold (`None` when no
        candidate qualifies).
    """
    subset = _subset(validation, samples)
    metric, sign = policy.metric, 1.0 if policy.mode == "max" else -1.0
    baseline = evaluate_metric(model, subset, metric)
    limit = SCAN_DROP_FACTOR * policy.max_metric_drop
    saved = get_masks(model)
    candidates, chosen = [], None
    try:
        for power in range(SCAN_DOUBLINGS + 1):
            threshold = policy.initial_step * 2.0**power
            masks = threshold_masks(
                model, scores, threshold, objective=objective, reference=reference,
                max_fraction=max_fraction, round_to=round_to,
            )
            apply_masks(model, masks)
            value = evaluate_metric(model, subset, metric)
            drop = sign * (baseline - value)
            candidates.append({
                "threshold": threshold, "metric": value, "drop": drop,
                "params_reduction": count_cost(model).params_reduction,
            })
            if drop > limit:
                break
            chosen = threshold
    finally:
        apply_masks(model, saved)
    return {
        "samples": int(samples), "baseline": baseline, "limit": limit,
        "candidates": candidates, "chosen": chosen,
    }


def first_threshold(model, policy, journal, manifest, scores, validation, *, objective, max_fraction, samples,
                    round_to=None):
    """`T` of round 1 from the scan, run once per run and kept in the manifest; `None` without a scan.

    Args:
        model: The round-0 model.
        policy: The run's policy.
        journal: The run's `RunJournal` (`threshold_scan` and the manifest are written).
        manifest: The manifest read at start, or `None`: a scan already in it is not redone.
        scores: `() -> {group name: scores}`; its first call fixes the threshold reference.
        validation: The validation batches.
        objective, max_fraction, samples, round_to: As `scan_thresholds`.
    """
    if not scan_applies(policy, samples):
        return None
    scan = (manifest or {}).get("threshold_scan")
    if scan is None:
        scan = scan_thresholds(
            model, policy, scores(), journal.threshold_reference, validation,
            objective=objective, max_fraction=max_fraction, samples=samples, round_to=round_to,
        )
        journal.threshold_scan = scan
        journal.write_manifest(policy)
    return scan["chosen"]
