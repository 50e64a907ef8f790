"""Deciding which filters one pruning round removes.

Two ways, both returning `{group name: bool keep array}` ready for
`tf_asap.apply_masks`, and both with the same guarantees:

- masks only shrink: a channel pruned before stays pruned, whatever its
  score;
- every group keeps at least its `min_filters` channels (the highest-scoring
  ones);
- with `round_to=N`, every group that loses channels keeps a multiple of `N`
  of them (rounded up, the highest-scoring first), or all its live ones;
- unprunable groups (`ChannelGroup.prunable` false, which includes layers
  given to `make_prunable(..., ignored_layers=...)`) and groups named in
  `ignored_layers` are left out of the result.

`threshold_masks` is the paper's layer-aware threshold (Section 3.3,
Algorithm 3): one global threshold `T`, scaled per group by the group's share
of the model's remaining cost. `ratio_masks` prunes a fixed fraction of the
remaining filters per round, the non-adaptive IAP/ILP baselines of the
paper's Table 4.

The cost of a layer (Algorithm 3, line 2): the paper's `N_i = n_{i-1} x
k_i^2 x n_i` is the size of the convolution that produces layer `i`'s filters,
with `n_{i-1}` and `n_i` the numbers of *unpruned* input and output channels.
Here it is the layer's effective params (or effective FLOPs) as counted by
`tf_asap.count_cost` under the current masks: kernel (and bias) entries that
survive pruning of both the layer's inputs and its outputs; for FLOPs,
`2 x output positions x` those kernel entries (the paper's `2 h_i w_i N_i`).

Each layer's threshold uses that layer's own share of the remaining cost
(Algorithm 3, line 3). Where a residual connection couples several producer
layers into one channel group, the group must be pruned as one, so it needs
one threshold: tf_asap prices the group as its *mean producer* (the mean of
its producers' costs), the share a single one of those layers would have.
Summing the producers instead (an earlier choice) gave the stage-3 residual
group of `resnet56`, with 10 producers, 39% of the cost against a median
group's 1.1%, so it was swallowed at a tiny `T` (a 36x larger threshold than
layers of the same size). The shares are normalized over the groups that may
be pruned this round, so `T` keeps the unit `attention_reference` gives it;
for single-producer groups the ratios between thresholds are the paper's.
"""

import math

import numpy as np

from tf_asap.checks import check_choice, check_fraction, check_number
from tf_asap.core.analysis import analyze
from tf_asap.core.counting import count_cost
from tf_asap.core.keras_graph import find_layer_names
from tf_asap.core.masks import get_masks
from tf_asap.errors import MaskError
from tf_asap.pruning.channel_counts import check_round_to, respect_min_filters, round_all

OBJECTIVES = ("params", "flops")
SCOPES = ("group", "global")


def _prunable_groups(analysis, ignored_layers):
    """The groups this round may prune, in graph order."""
    ignored = {getattr(item, "name", item) for item in (ignored_layers or [])}
    if ignored:
        find_layer_names(analysis.model, sorted(ignored), "ignored_layers", graph=analysis.graph)
    return [
        group
        for group in analysis.groups
        if group.prunable and group.name not in ignored and not ignored.intersection(group.producers)
    ]


def _check_objective(objective):
    check_choice("objective", objective, OBJECTIVES, fix="It says what the layer-aware thresholds weigh groups by.")


def _check_threshold_arguments(threshold, objective, reference):
    check_number("threshold", threshold, low=0.0, fix="T = 0 prunes only filters that score 0.")
    check_number("reference", reference, low=0.0, low_open=True)
    _check_objective(objective)


def _check_scores(groups, scores):
    """Validated float64 scores of `groups`; other entries of `scores` are ignored."""
    checked = {}
    for group in groups:
        if group.name not in scores:
            raise MaskError(
                f"No scores for channel group '{group.name}'. Pass the scores "
                "of every prunable group, as returned by a criterion's "
                "score(model, data), or list the group in ignored_layers."
            )
        values = np.asarray(scores[group.name], dtype=np.float64)
        if values.shape != (group.size,):
            raise MaskError(
                f"The scores of group '{group.name}' have shape {values.shape}; "
                f"the group has {group.size} channels, so pass an array of shape "
                f"({group.size},)."
            )
        if not np.all(np.isfinite(values)):
            raise MaskError(f"The scores of group '{group.name}' contain NaN or infinite values.")
        checked[group.name] = values
    return checked


def group_costs(model, objective="params", ignored_layers=None):
    """Remaining cost of every group that may be pruned (Algorithm 3, line 2).

    Args:
        model: A model returned by `tf_asap.make_prunable`.
        objective: `"params"` or `"flops"`. Defaults to `"params"`.
        ignored_layers: Names of layers whose groups must be left out.
            Defaults to `None`.

    Returns:
        `{group name: float}`: the mean effective params (or FLOPs) of the
        group's producer layers under the current masks (see the module
        docstring); for a one-layer group, that layer's cost.
    """
    _check_objective(objective)
    analysis = analyze(model)
    return _group_costs(analysis, _prunable_groups(analysis, ignored_layers), objective)


def _group_costs(analysis, groups, objective):
    cost = count_cost(analysis.model, analysis=analysis)
    field = "effective_params" if objective == "params" else "effective_flops"
    return {
        group.name: float(np.mean([getattr(cost.layer(name), field) for name in group.producers]))
        for group in groups
    }


def group_thresholds(model, threshold, objective="params", reference=1.0, ignored_layers=None):
    """Per-group thresholds of Algorithm 3, line 3.

    `T_g = threshold x reference x cost_g / sum of cost over the groups that
    may be pruned`, where `cost_g` is the remaining params or FLOPs of the
    group's mean producer layer (`group_costs`). A group that holds more of the model's size (or
    computation) gets a higher threshold, since it is more likely to hold
    redundant filters.

    Args:
        model: A model returned by `tf_asap.make_prunable`.
        threshold: The global threshold `T >= 0`, in units of `reference`.
        objective: `"params"` or `"flops"`. Defaults to `"params"`.
        reference: The score scale `T` is measured in (see
            `attention_reference`); `1.0` makes `T` an absolute score, as in
            the paper. Defaults to `1.0`.
        ignored_layers: Names of layers whose groups must be left out.
            Defaults to `None`.

    Returns:
        `{group name: float}`.

    Raises:
        ConfigurationError: For a negative or non-finite `threshold`, a
            non-positive `reference` or an unknown `objective`.
    """
    _check_threshold_arguments(threshold, objective, reference)
    analysis = analyze(model)
    return _thresholds(analysis, _prunable_groups(analysis, ignored_layers), threshold, objective, reference)


def _thresholds(analysis, groups, threshold, objective, reference):
    costs = _group_costs(analysis, groups, objective)
    total = sum(costs.values())
    if total == 0:
        return {name: 0.0 for name in costs}
    return {name: float(threshold) * float(reference) * cost / total for name, cost in costs.items()}


def threshold_masks(
    model,
    scores,
    threshold,
    objective="params",
    reference=1.0,
    ignored_layers=None,
    max_fraction=0.5,
    max_reduction=None,
    reduction_objective=None,
    round_to=None,
):
    """Masks of one pruning round with layer-aware thresholds (Algorithm 3).

    Each group `g` gets the threshold `T_g` of `group_thresholds`; a live
    filter whose score is `<= T_g` is pruned (Algorithm 3, line 5), so `T = 0`
    prunes exactly the filters scoring 0 (dead or all-zero filters, the
    paper's first round). Pruned channels stay pruned, and each group keeps at
    least `min_filters` channels: if the threshold would leave fewer, the
    highest-scoring live ones stay.

    Args:
        model: A model returned by `tf_asap.make_prunable`.
        scores: `{group name: array of shape (group.size,)}` for every
            prunable group, higher = more important, as returned by a
            criterion (`tf_asap.pruning.importance`). Entries of other groups are
            ignored.
        threshold: The global threshold `T >= 0`, in units of `reference`.
        objective: `"params"` or `"flops"`: what a group's share is measured
            in. Defaults to `"params"`.
        reference: The score scale `T` is measured in; pass the value of
            `attention_reference` measured on the first round to use `T` in
            relative units, or `1.0` for the paper's absolute `T`. Defaults
            to `1.0`.
        ignored_layers: Names of layers whose groups must not be pruned this
            round (in addition to the groups `make_prunable` made
            unprunable). Defaults to `None`.
        max_fraction: The largest fraction of a group's live filters one
            round may prune (the lowest-scoring go first; filters scoring 0
            are always pruned, they compute nothing). Behind BatchNormalization
            a group's scores sit in a narrow band, so the threshold crosses
            all of them within one small step of `T` (measured on a
            Fashion-MNIST VGG: 64 filters at `T = 0.3`, 1 at `T = 0.4`) and
            the round destroys the layer; the cap spreads such a sweep over
            rounds, each followed by retraining. `None` applies Algorithm 3
            exactly as written. Defaults to `0.5`.
        max_reduction: The largest fraction of the model's dense cost (in
            `objective`) the masks may remove, or `None` for no limit. Near a
            size target one step of `T` can move the size by more than the
            target's window; then the filters pruned this round are given
            back, the least confidently pruned first (highest score relative
            to its group's threshold), until the reduction is at most
            `max_reduction`. The memory- and FLOPs-constrained policies pass
            their `reduction_limit`. Defaults to `None`.
        reduction_objective: `"params"` or `"flops"`: what `max_reduction`
            is a reduction of. Defaults to `None`: `objective`.
        round_to: Make every pruned group keep a multiple of this many
            channels, rounding up with the highest-scoring of the channels
            the threshold dropped (a group with fewer live channels than the
            next multiple keeps them all): the channel block of the runtime
            the model is for (`tf_asap.pruning.channel_counts`;
            `benchmarks/bench_widths.py` measures a machine's). Applied last,
            so it only gives channels back and `max_reduction` still holds.
            Defaults to `None`: exact counts.

    Returns:
        `{group name: bool array}` (`True` = keep) for every group that may
        be pruned, ready for `tf_asap.apply_masks`.

    Raises:
        ConfigurationError: For a bad `threshold`, `reference`, `objective`
            or `ignored_layers`.
        MaskError: If the model has no masks, or scores are missing, of the
            wrong shape or not finite.

    Example:

    >>> scores = tf_asap.pruning.importance.ActivationAttention().score(pm, x_calibration)
    >>> reference = attention_reference(scores)        # once, in round 1
    >>> masks = threshold_masks(pm, scores, threshold=0.5, reference=reference)
    >>> tf_asap.apply_masks(pm, masks)
    """
    _check_threshold_arguments(threshold, objective, reference)
    check_fraction("max_fraction", max_fraction, allow_zero=False, allow_none=True, fix="Pass None for no cap (the paper's rule).")
    round_to = check_round_to(round_to)
    analysis = analyze(model)
    groups = _prunable_groups(analysis, ignored_layers)
    values = _check_scores(groups, scores)
    thresholds = _thresholds(analysis, groups, threshold, objective, reference)
    current = get_masks(model, analysis=analysis)
    masks = {}
    for group in groups:
        alive = np.asarray(current[group.name], bool)
        keep = alive & (values[group.name] > thresholds[group.name])
        if max_fraction is not None:
            keep = _cap_removals(alive, keep, values[group.name], max_fraction)
        masks[group.name] = respect_min_filters(group, alive, keep, values[group.name])
    if max_reduction is not None:
        priced = objective if reduction_objective is None else check_choice(
            "reduction_objective", reduction_objective, OBJECTIVES
        )
        masks = _limit_reduction(analysis, current, masks, values, thresholds, priced, max_reduction)
    return round_all(masks, current, values, round_to)


def _reduction_under(analysis, masks, objective):
    """The reduction `masks` would give, priced without writing them into the model."""
    cost = count_cost(analysis.model, masks=masks, analysis=analysis)
    return cost.params_reduction if objective == "params" else cost.flops_reduction


def _limit_reduction(analysis, current, masks, values, thresholds, objective, max_reduction):
    """Gives back this round's pruned filters until the reduction is <= `max_reduction`.

    The model is never touched: candidate masks are priced by `count_cost`.
    Restoring filters only adds cost, so the fewest filters to give back are
    found by bisection over the ordered candidates.
    """
    check_fraction("max_reduction", max_reduction, allow_zero=False, fix="Pass None for no limit.")
    candidates = []
    for name, keep in masks.items():
        threshold = thresholds[name]
        for index in np.flatnonzero(np.asarray(current[name], bool) & ~keep):
            score = values[name][index]
            # How far above its group's threshold the filter was (higher =
            # pruned with less confidence); a zero threshold ranks by score.
            confidence = score / threshold if threshold > 0 else score
            candidates.append((-confidence, name, int(index)))
    if not candidates:
        return masks
    candidates.sort()

    def with_restored(count):
        trial = {name: keep.copy() for name, keep in masks.items()}
        for _, name, index in candidates[:count]:
            trial[name][index] = True
        return trial

    if _reduction_under(analysis, masks, objective) <= max_reduction:
        return masks
    low, high = 1, len(candidates)  # restoring all gives the current reduction
    while low < high:
        middle = (low + high) // 2
        if _reduction_under(analysis, with_restored(middle), objective) <= max_reduction:
            high = middle
        else:
            low = middle + 1
    return with_restored(low)


def _cap_removals(alive, keep, scores, max_fraction):
    """Prunes at most `max_fraction` of the live filters with a positive score."""
    removed = np.flatnonzero(alive & ~keep & (scores > 0))
    allowed = max(1, _count(max_fraction, int(alive.sum())))
    if removed.size <= allowed:
        return keep
    # Lowest score first; among equal scores, the higher index goes first so
    # that the lower index is kept (as keep_best breaks ties).
    order = removed[np.lexsort((-removed, scores[removed]))]
    keep = keep.copy()
    keep[order[allowed:]] = True
    return keep


def attention_reference(scores):
    """The scale that makes the global threshold `T` unit-free.

    Raw attention values depend on the model, the data's scale and the
    activation function, so the paper's absolute `T` (its `λ = 0.005`) fits
    one model only. Measuring `T` in units of

        `reference = (number of scored groups) x median of the live scores`

    makes `T = 1` mean "a typical filter's score" for a group holding an
    average share of the cost: such a group's threshold (`T x reference x
    share`, with `share = 1 / number of groups`) is the median score, so it
    loses about half its filters; groups holding more of the cost lose more,
    as Algorithm 3 intends. Live scores are the positive ones (pruned and dead
    filters score 0 and would drag the median to 0).

    Measure it once, on the first round's scores, and keep it fixed for the
    whole run: recomputed each round it would rise as weak filters go, and the
    same `T` would mean ever harsher pruning.

    Args:
        scores: `{group name: array}` of the groups that may be pruned, as a
            criterion returns them.

    Returns:
        A positive float; `1.0` if no score is positive.
    """
    arrays = [np.asarray(values, np.float64).ravel() for values in scores.values()]
    live = np.concatenate(arrays) if arrays else np.zeros(0)
    live = live[live > 0]
    if live.size == 0:
        return 1.0
    return float(len(arrays) * np.median(live))


def _count(fraction, alive):
    # Half-up rounding: with floor, a 5% rate would never touch a group of
    # fewer than 20 filters.
    return int(math.floor(fraction * alive + 0.5))


def ratio_masks(model, scores, fraction, scope="group", ignored_layers=None, round_to=None):
    """Masks that prune a fixed fraction of the remaining filters (IAP/ILP).

    The paper's non-adaptive baselines (Table 4) prune a fixed percentage of
    filters every round: IAP ranks them by activation attention, ILP by L1
    norm; pass the matching criterion's scores. The fraction applies to the
    filters still alive, so repeated rounds shrink the model geometrically.

    Args:
        model: A model returned by `tf_asap.make_prunable`.
        scores: `{group name: array}` for every prunable group, higher = more
            important.
        fraction: Fraction of the remaining filters to prune, in [0, 1).
        scope: `"group"`: each group loses `round(fraction x its live
            filters)` of its lowest-scoring filters (every layer shrinks
            alike). `"global"`: `round(fraction x all live filters)` are
            removed, the lowest raw scores across all groups first. Raw scores
            are compared as the paper's iterative baselines do, without
            per-group normalization; note that raw L1 norms grow with a
            layer's fan-in, so global ILP concentrates on thin layers; use
            `"group"` for a scale-free alternative. Defaults to `"group"`.
        ignored_layers: Names of layers whose groups must not be pruned.
            Defaults to `None`.
        round_to: Make every pruned group keep a multiple of this many
            channels, rounded up (see `threshold_masks`). Defaults to
            `None`: exact counts.

    Returns:
        `{group name: bool array}` for every group that may be pruned.
        Groups at their `min_filters` are skipped (in `"global"` scope the
        next-lowest filter elsewhere is taken instead), so fewer filters than
        asked may go.

    Raises:
        ConfigurationError: For a `fraction` outside [0, 1) or an unknown
            `scope`.
        MaskError: If the model has no masks, or scores are missing or
            malformed.

    Example:

    >>> masks = ratio_masks(pm, L1Norm().score(pm), fraction=0.05)  # ILP, 5% a round
    """
    check_fraction(
        "fraction", fraction, allow_one=False, fix="It is the share of remaining filters to prune each round, e.g. 0.05."
    )
    check_choice("scope", scope, SCOPES)
    round_to = check_round_to(round_to)
    analysis = analyze(model)
    groups = _prunable_groups(analysis, ignored_layers)
    values = _check_scores(groups, scores)
    current = get_masks(model, analysis=analysis)
    alive = {group.name: np.asarray(current[group.name], bool) for group in groups}
    masks = {name: keep.copy() for name, keep in alive.items()}

    def lowest_first(name):
        candidates = np.flatnonzero(alive[name])
        return candidates[np.lexsort((candidates, values[name][candidates]))]

    if scope == "group":
        for group in groups:
            count = int(alive[group.name].sum())
            removable = max(0, count - group.min_filters)
            masks[group.name][lowest_first(group.name)[: min(_count(fraction, count), removable)]] = False
        return round_all(masks, current, values, round_to)

    total = sum(int(keep.sum()) for keep in alive.values())
    ranked = sorted(
        (values[group.name][index], position, index, group)
        for position, group in enumerate(groups)
        for index in lowest_first(group.name)
    )
    remaining = {group.name: int(alive[group.name].sum()) for group in groups}
    to_prune = _count(fraction, total)
    for _, _, index, group in ranked:
        if to_prune == 0:
            break
        if remaining[group.name] > group.min_filters:
            masks[group.name][index] = False
            remaining[group.name] -= 1
            to_prune -= 1
    return round_all(masks, current, values, round_to)
