"""How many channels a group keeps once a round has chosen what to prune.

The thresholds and the fixed-rate baselines (`tf_asap.pruning.thresholds`)
decide which channels score too low; two rules then set how many stay, both by
giving back the highest-scoring live channels they dropped:

- `min_filters` (set by `make_prunable`): a group never falls below it;
- `round_to`: a group that loses channels keeps a multiple of `round_to` (or
  all its live ones). CPU kernels compute output channels in blocks, so a
  layer's latency follows its width rounded up to the block: on the AVX-512
  machine of `benchmarks/results/runtime_widths.md`, XNNPACK's int8 kernels
  without AMX take blocks of 16 (4 to 16 channels cost the same, 17 to 32 twice
  that). A model pruned to multiples of the block loses no accuracy to
  channels that save no time.

Masks only shrink either way: a channel is given back only if it was live.
"""

import numpy as np

from tf_asap.checks import check_int


def keep_best(alive, keep, scores, count):
    """Adds back the `count` best-scoring alive channels that `keep` dropped (never a dead one)."""
    candidates = np.flatnonzero(alive)
    # Highest score first; among equal scores, the lower index.
    best = candidates[np.lexsort((candidates, -scores[candidates]))][:count]
    keep = keep.copy()
    keep[best] = True
    return keep


def respect_min_filters(group, alive, keep, scores):
    """`keep` with at least the group's `min_filters` channels (or all live ones)."""
    if keep.sum() >= min(group.min_filters, alive.sum()):
        return keep
    return keep_best(alive, keep, scores, group.min_filters)


def check_round_to(round_to):
    """`round_to` checked: `None` (exact counts) or a positive channel multiple."""
    return check_int(
        "round_to", round_to, minimum=1, allow_none=True,
        fix="It is the channel block of the target runtime, e.g. 8 or 16 (see "
        "benchmarks/bench_widths.py); pass None to keep exact counts.",
    )


def round_up_kept(alive, keep, scores, round_to):
    """Keeps a multiple of `round_to` channels (rounded up, best first), or all live ones.

    The channels a round keeps are the highest-scoring live ones of their
    group, so keeping the best `target` adds the best of those it dropped.
    """
    kept = int(keep.sum())
    if round_to is None or round_to == 1 or kept % round_to == 0:
        return keep
    target = min(int(alive.sum()), -(-kept // round_to) * round_to)
    return keep_best(alive, keep, scores, target)


def round_all(masks, current, scores, round_to):
    """`round_up_kept` on every group of `masks`; `current` holds the live channels."""
    if round_to is None:
        return masks
    return {
        name: round_up_kept(np.asarray(current[name], bool), keep, scores[name], round_to)
        for name, keep in masks.items()
    }
