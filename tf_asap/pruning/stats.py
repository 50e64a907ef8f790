"""Activation statistics of filters: the paper's attention (Section 3.1) and APoZ.

The attention of filter `j` is a statistic of its activation map `A_j`, the
output of the non-linearity that follows it, over a calibration data set. For
one sample, with `p = power`:

- `"mean"`: `mean_{k,l} |a_kl|^p` (the paper's choice, with `p = 1`),
- `"max"`:  `max_{k,l} |a_kl|^p`,
- `"sum"`:  `sum_{k,l} |a_kl|^p`,

and a filter's attention is the average of that per-sample value over all
calibration samples. The *average percentage of zeros* (APoZ) of a filter is
the fraction of its activation entries that are exactly zero, over the same
samples.

How it is computed: an auxiliary `keras.Model(model.input, [activation
tensors])` is called with `training=False` inside a `tf.function` that reduces
each activation tensor *in the graph* to one float per channel (the sum over
the batch of the per-sample attention), so only `C` floats per tensor leave
the graph per batch, and memory does not grow with the number of samples.
On a model built under a `tf.distribute` strategy with several replicas (or
workers) each replica reduces its share of every batch and the partial sums
are added across replicas, so the statistics equal one device's on the same
samples (to float rounding).
The auxiliary model and the traced function are built once per model and
reused across rounds (masks are variables, so changing them needs no retrace).

Two mistakes of the paper's reference code are fixed here:

- it scored filters on the last mini-batch only; here every calibration
  sample counts equally;
- it averaged activations over the batch *before* raising them to the power
  `p`; here `|a|^p` is taken per sample, as the paper's formula states (the
  two differ for `p != 1`, and for `"max"` even at `p = 1`).
"""

import dataclasses
import weakref

import keras
import numpy as np
import tensorflow as tf

from tf_asap import distribute
from tf_asap.checks import check_bool, check_choice, check_number
from tf_asap.errors import DataError, UnsupportedModelError
from tf_asap.core.analysis import channel_groups
from tf_asap.inputs import as_batches
from tf_asap.core.masks import get_masks, is_prunable_model

MAPPINGS = ("mean", "max", "sum")


@dataclasses.dataclass(frozen=True)
class ActivationStatistics:
    """Per-filter activation statistics of every prunable channel group.

    Attributes:
        attention: `{group name: float64 array of shape (group.size,)}`, the
            mean over samples of the per-sample attention. Pruned channels
            read `0`.
        apoz: `{group name: float64 array}`, the fraction of zero activation
            entries per channel, in [0, 1] (pruned channels read `1`), or
            `None` when not collected.
        num_samples: How many samples the statistics average over.
        power: The exponent `p` used.
        mapping: `"mean"`, `"max"` or `"sum"`.
    """

    attention: dict
    apoz: dict | None
    num_samples: int
    power: float
    mapping: str


def check_attention_options(power, mapping):
    """Raises `ConfigurationError` unless `power > 0` and `mapping` is known."""
    check_choice("mapping", mapping, MAPPINGS, fix="These are the paper's attention maps.")
    check_number("power", power, 0.0, low_open=True, fix="The paper uses 1, 2 or 4.")


class StatsCollector:
    """Gathers activation statistics of one model, reusing its traced graph.

    Building the auxiliary model and tracing its reduction costs a fraction of
    a second; a collector keeps both, so that gathering statistics every
    pruning round costs only the forward passes. `collect_activation_stats`
    keeps one collector per model for you; build one yourself to hold it
    explicitly.

    How a group with several activation tensors is scored: a residual stage is
    one group whose channels pass several `Add` -> ReLU points (one per block),
    and a channel is kept or removed in all of them at once. Its attention is
    the *mean* of its per-tensor attentions. The mean keeps residual groups on
    the same scale as single-tensor groups, which matters because thresholds
    and the reference scale compare scores across groups (a sum would inflate
    a stage's scores by its number of blocks and shield it from pruning; a max
    would let one block decide for all); and a channel still scores above 0 if
    it is alive in any block, since removing it changes that block's output.

    Args:
        model: A functional or Sequential `keras.Model`, usually one returned
            by `tf_asap.make_prunable`.

    Raises:
        UnsupportedModelError: If an activation tensor of a group cannot be
            reached (a plain model with nested sub-models: call
            `tf_asap.make_prunable` first, which flattens it).

    Example:

    >>> collector = StatsCollector(pm)
    >>> stats = collector.collect((x_calib, y_calib), apoz=True)
    >>> stats.attention["conv1"].shape
    (16,)
    """

    def __init__(self, model):
        self.model = model
        self.groups = [group for group in channel_groups(model) if group.prunable]
        tap_names = []
        # group name -> [(index into tap_names, channel offset)]
        self._taps = {}
        for group in self.groups:
            refs = []
            for ref in group.activations:
                if ref.layer not in tap_names:
                    tap_names.append(ref.layer)
                refs.append((tap_names.index(ref.layer), ref.offset))
            self._taps[group.name] = refs
        tensors = []
        for name in tap_names:
            try:
                tensors.append(model.get_layer(name).output)
            except ValueError as error:
                raise UnsupportedModelError(
                    f"Cannot read the activations of layer '{name}' from model "
                    f"'{model.name}': it is not a top-level layer (the model "
                    "nests another model). Gather statistics on "
                    "pm = tf_asap.make_prunable(model), which is flat."
                ) from error
        self.tap_names = tuple(tap_names)
        self._aux = keras.Model(model.input, tensors, name=f"{model.name}_activations") if tensors else None
        self._steps = {}

    def _step(self, power, mapping, with_apoz, element_spec):
        """The traced per-batch reduction for these options and input spec (built once).

        Traced for the batch dimension `None`, so a short last batch or a
        different batch size next round reuses the same graph.
        """
        # repr, because a dict of specs (a multi-input model) is not hashable.
        key = (float(power), mapping, bool(with_apoz), repr(element_spec))
        if key not in self._steps:
            reduction = self._reduction(power, mapping, with_apoz)
            self._steps[key] = tf.function(reduction, autograph=False).get_concrete_function(
                element_spec
            )
        return self._steps[key]

    def _distributed_step(self, strategy, power, mapping, with_apoz):
        """The per-batch reduction run on every replica, its partial sums added up.

        Each replica reduces its share of a batch to per-channel sums (and a
        sample count); `strategy.reduce(SUM)` adds them across replicas and
        workers, so the totals are those of one device on the same samples.
        """
        key = ("distributed", id(strategy), float(power), mapping, bool(with_apoz))
        if key not in self._steps:
            reduction = self._reduction(power, mapping, with_apoz)
            sizes = [int(t.shape[-1]) for t in self._aux.outputs] * (2 if with_apoz else 1)

            def replica_step(x):
                attention, zeros, count = reduction(x)
                # One flat vector, so that one collective all-reduce carries
                # it (the count in float: no integer collective kernels).
                count = tf.cast(tf.reshape(count, [1]), tf.float32)
                return tf.concat([*attention, *zeros, count], axis=0)

            def step(x):
                partial = strategy.run(replica_step, args=(x,))
                total = strategy.reduce(tf.distribute.ReduceOp.SUM, partial, axis=None)
                parts = tf.split(total, [*sizes, 1])
                attention = parts[: len(self._aux.outputs)]
                zeros = parts[len(self._aux.outputs) : len(sizes)]
                return attention, zeros, tf.cast(parts[-1][0], tf.int64)

            self._steps[key] = tf.function(step, autograph=False)
        return self._steps[key]

    def _reduction(self, power, mapping, with_apoz):
        """`x -> (per-channel attention sums, per-channel zero fractions, samples)`."""
        aux = self._aux
        reduce = {"mean": tf.reduce_mean, "max": tf.reduce_max, "sum": tf.reduce_sum}[mapping]

        def step(x):
            outputs = aux(x, training=False)
            if not isinstance(outputs, (list, tuple)):
                outputs = [outputs]
            attention, zeros = [], []
            for activation in outputs:
                activation = tf.cast(activation, tf.float32)
                spatial = list(range(1, activation.shape.rank - 1))
                magnitude = tf.abs(activation)
                if power != 1:
                    magnitude = tf.pow(magnitude, power)
                # Per sample first (the paper's formula), then summed over the
                # batch; the division by the sample count happens once at the end.
                per_sample = reduce(magnitude, axis=spatial) if spatial else magnitude
                attention.append(tf.reduce_sum(per_sample, axis=0))
                if with_apoz:
                    is_zero = tf.cast(tf.equal(activation, 0.0), tf.float32)
                    per_sample = tf.reduce_mean(is_zero, axis=spatial) if spatial else is_zero
                    zeros.append(tf.reduce_sum(per_sample, axis=0))
            count = tf.shape(outputs[0])[0]
            return attention, zeros, count

        return step

    def collect(self, data, power=1, mapping="mean", apoz=False, batch_size=None, max_samples=None):
        """Runs the calibration data through the model and returns the statistics.

        Args:
            data: Calibration data: arrays `x` or `(x, y)`, a `tf.data.Dataset`
                (batched or not), a generator or a function returning one
                (see `tf_asap.inputs`). Labels are ignored.
            power: The exponent `p` of `|a|^p`. Defaults to `1`.
            mapping: `"mean"`, `"max"` or `"sum"` over each activation map.
                Defaults to `"mean"`.
            apoz: Also gather APoZ in the same pass. Defaults to `False`.
            batch_size: Batch size. Defaults to `None`: batched data keeps its
                batches, arrays are batched by 128.
            max_samples: Use at most this many samples. Defaults to `None`
                (all).

        Returns:
            An `ActivationStatistics`.

        Raises:
            ConfigurationError: For an unknown `mapping` or a non-positive
                `power`, `batch_size` or `max_samples`.
            DataError: If `data` cannot be read or holds no samples.
        """
        check_attention_options(power, mapping)
        apoz = check_bool("apoz", apoz)
        if self._aux is None:
            return ActivationStatistics({}, {} if apoz else None, 0, power, mapping)
        batches = as_batches(data, self.model, batch_size=batch_size, limit=max_samples)
        strategy = self.model.distribute_strategy
        if strategy.num_replicas_in_sync > 1 or distribute.is_multi_worker(strategy):
            with strategy.scope():
                batches = strategy.experimental_distribute_dataset(batches)
            step = self._distributed_step(strategy, power, mapping, apoz)
        else:
            step = self._step(power, mapping, apoz, batches.element_spec)
        sums = [np.zeros(int(t.shape[-1]), np.float64) for t in self._aux.outputs]
        zero_sums = [np.zeros_like(s) for s in sums] if apoz else None
        num_samples = 0
        for x in batches:
            attention, zeros, count = step(x)
            for total, value in zip(sums, attention):
                total += value.numpy()
            if apoz:
                for total, value in zip(zero_sums, zeros):
                    total += value.numpy()
            num_samples += int(count)
        if num_samples == 0:
            raise DataError("The calibration data holds no samples; pass at least one.")

        keep = get_masks(self.model) if is_prunable_model(self.model) else {}
        attention = self._per_group(sums, num_samples, keep, pruned_value=0.0)
        zero_fraction = self._per_group(zero_sums, num_samples, keep, pruned_value=1.0) if apoz else None
        return ActivationStatistics(attention, zero_fraction, num_samples, power, mapping)

    def _per_group(self, sums, num_samples, keep, pruned_value):
        result = {}
        for group in self.groups:
            per_tap = [sums[tap][offset : offset + group.size] for tap, offset in self._taps[group.name]]
            values = np.mean(per_tap, axis=0) / num_samples
            if group.name in keep:
                values = np.where(keep[group.name], values, pruned_value)
            result[group.name] = values
        return result


# One collector per model, dropped with the model.
_COLLECTORS = weakref.WeakKeyDictionary()


def stats_collector(model):
    """The cached `StatsCollector` of `model`, built on first use."""
    collector = _COLLECTORS.get(model)
    if collector is None:
        collector = StatsCollector(model)
        _COLLECTORS[model] = collector
    return collector


def collect_activation_stats(model, data, power=1, mapping="mean", batch_size=None, max_samples=None):
    """Per-filter activation attention of every prunable channel group.

    Implements the attention maps of Section 3.1 of the paper (see the module
    docstring for the formulas): for each sample, `|a|^p` of a filter's
    activation map is reduced by `mapping`, and the result is averaged over
    all samples of `data`. The statistics are streamed batch by batch and
    reduced inside the TensorFlow graph, so memory does not depend on how many
    samples are used. Unlike the paper's reference code, all samples count
    (not only the last batch) and the power is applied per sample, before any
    averaging.

    The model is called with `training=False` (BatchNormalization uses its
    moving statistics, Dropout is off). Channels already pruned score `0`. A
    residual group's score is the mean of its per-tensor scores (see
    `StatsCollector`). For APoZ as well, use
    `stats_collector(model).collect(data, apoz=True)` (the same cached
    collector this function uses).

    Args:
        model: A functional or Sequential `keras.Model`, usually one returned
            by `tf_asap.make_prunable`.
        data: Calibration data: arrays `x` or `(x, y)`, a `tf.data.Dataset`
            (batched or not), a generator or a function returning one. Labels
            are ignored.
        power: The exponent `p`. Defaults to `1`.
        mapping: `"mean"`, `"max"` or `"sum"` over each activation map.
            Defaults to `"mean"`.
        batch_size: Batch size. Defaults to `None`: batched data keeps its
            batches, arrays are batched by 128.
        max_samples: Use at most this many samples. Defaults to `None` (all).

    Returns:
        `{group name: float64 array of shape (group.size,)}` for every
        prunable group.

    Raises:
        ConfigurationError: For an unknown `mapping` or a non-positive
            `power`, `batch_size` or `max_samples`.
        DataError: If `data` cannot be read or holds no samples.

    Example:

    >>> pm = tf_asap.make_prunable(model)
    >>> attention = tf_asap.collect_activation_stats(pm, x_train, max_samples=2000)
    >>> attention["conv1"]
    array([0.41, 0.  , 1.37, ...])
    """
    stats = stats_collector(model).collect(
        data, power=power, mapping=mapping, batch_size=batch_size, max_samples=max_samples
    )
    return stats.attention
