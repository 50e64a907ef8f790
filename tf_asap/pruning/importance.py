"""Importance criteria: one score per channel of every prunable group.

Every criterion has the same interface, so thresholds, fixed-ratio pruning
and the round controller treat them alike:

```python
scores = criterion.score(model, data)   # {group name: float64 array (group.size,)}
```

Higher scores mean more important. Only prunable groups are scored, and a
channel that is already pruned scores `0`, so that a threshold or a ranking
never prefers it over a live channel. Criteria never edit the model.

| name          | class                 | needs data | score of a filter                         |
|---------------|-----------------------|------------|-------------------------------------------|
| `"attention"` | `ActivationAttention` | yes        | the paper's activation attention (3.1)    |
| `"l1"`        | `L1Norm`              | no         | L1 norm of its kernel weights (ILP)       |
| `"l2"`        | `L2Norm`              | no         | L2 norm of its kernel weights             |
| `"apoz"`      | `APoZ`                | yes        | 1 - average percentage of zero activations|
| `"random"`    | `RandomScore`         | no         | a seeded uniform draw in (0, 1]           |
"""

import zlib

import numpy as np

from tf_asap.checks import check_int
from tf_asap.errors import ConfigurationError
from tf_asap.core.analysis import channel_groups
from tf_asap.core.rules import channel_axes, is_kernel
from tf_asap.core.layers import MaskedLayer
from tf_asap.core.masks import get_masks, is_prunable_model
from tf_asap.pruning.stats import check_attention_options, stats_collector


def _live_masks(model):
    return get_masks(model) if is_prunable_model(model) else {}


def _zero_pruned(scores, model):
    keep = _live_masks(model)
    return {
        name: np.where(keep[name], values, 0.0) if name in keep else values
        for name, values in scores.items()
    }


class Criterion:
    """Base class of importance criteria.

    Subclasses implement `_score(model, data)` returning
    `{group name: array}` for every prunable group; `score` validates the
    data requirement and zeroes the scores of pruned channels.

    Attributes:
        name: The criterion's name for `get_criterion` and logs.
        requires_data: Whether `score` needs calibration data.
    """

    name = ""
    requires_data = False

    def score(self, model, data=None):
        """Scores every channel of every prunable group of `model`.

        Args:
            model: A model returned by `tf_asap.make_prunable` (a plain
                functional model also works: nothing is then pruned).
            data: Calibration data (arrays `x` or `(x, y)`, a
                `tf.data.Dataset`, a generator); needed when
                `requires_data` is true, ignored otherwise. Defaults to
                `None`.

        Returns:
            `{group name: float64 array of shape (group.size,)}`; higher is
            more important; pruned channels score `0`.

        Raises:
            ConfigurationError: If the criterion needs data and none is given.
        """
        if self.requires_data and data is None:
            raise ConfigurationError(
                f"The {type(self).__name__} criterion scores filters by their "
                "activations, so it needs calibration data: call "
                "criterion.score(model, data) with arrays, a tf.data.Dataset "
                "or a generator (a few thousand samples are enough)."
            )
        return _zero_pruned(self._score(model, data), model)

    def _score(self, model, data):
        raise NotImplementedError

    def get_config(self):
        """The constructor arguments, such that `type(c)(**c.get_config())` equals `c`."""
        return {}

    def __repr__(self):
        arguments = ", ".join(f"{key}={value!r}" for key, value in self.get_config().items())
        return f"{type(self).__name__}({arguments})"

    def __eq__(self, other):
        return type(self) is type(other) and self.get_config() == other.get_config()

    def __hash__(self):
        return hash((type(self), tuple(sorted(self.get_config().items()))))


class ActivationAttention(Criterion):
    """The paper's activation-based attention (Section 3.1).

    The score of a filter is the mean over calibration samples of
    `mapping(|a|^power)` over its activation map; see
    `tf_asap.collect_activation_stats`, which this calls (the power is taken
    per sample, fixing the paper's reference code).

    Args:
        power: The exponent `p`. Defaults to `1` (the paper's choice).
        mapping: `"mean"`, `"max"` or `"sum"`. Defaults to `"mean"` (the
            paper's choice; Table 3).
        batch_size: Batch size for the calibration pass. Defaults to `None`
            (batched data keeps its batches, arrays are batched by 128).
        max_samples: Use at most this many calibration samples. Defaults to
            `None` (all).

    Example:

    >>> scores = ActivationAttention().score(pm, x_calibration)
    """

    name = "attention"
    requires_data = True

    def __init__(self, power=1, mapping="mean", batch_size=None, max_samples=None):
        check_attention_options(power, mapping)
        self.power = power
        self.mapping = mapping
        self.batch_size = batch_size
        self.max_samples = max_samples

    def _score(self, model, data):
        return stats_collector(model).collect(
            data,
            power=self.power,
            mapping=self.mapping,
            batch_size=self.batch_size,
            max_samples=self.max_samples,
        ).attention

    def get_config(self):
        return {
            "power": self.power,
            "mapping": self.mapping,
            "batch_size": self.batch_size,
            "max_samples": self.max_samples,
        }


class APoZ(Criterion):
    """Average percentage of zeros (Hu et al., 2016), as an importance score.

    APoZ is the fraction of a filter's post-activation entries that are
    exactly zero over the calibration data; a high APoZ marks an unimportant
    filter. To keep "higher score = more important" across criteria, the
    score is `1 - APoZ` (the fraction of non-zero entries), in [0, 1]. With
    activations that are rarely exactly zero (swish, GELU, tanh...) every
    filter scores close to 1 and this criterion cannot rank them; use it
    with ReLU networks.

    Args:
        batch_size: Batch size for the calibration pass. Defaults to `None`.
        max_samples: Use at most this many calibration samples. Defaults to
            `None` (all).
    """

    name = "apoz"
    requires_data = True

    def __init__(self, batch_size=None, max_samples=None):
        self.batch_size = batch_size
        self.max_samples = max_samples

    def _score(self, model, data):
        stats = stats_collector(model).collect(
            data, apoz=True, batch_size=self.batch_size, max_samples=self.max_samples
        )
        return {name: 1.0 - values for name, values in stats.apoz.items()}

    def get_config(self):
        return {"batch_size": self.batch_size, "max_samples": self.max_samples}


def filter_norms(model, order):
    """`order`-norm of every filter's kernel weights, per prunable group.

    A filter's weights are the slice of each kernel of the producer layer
    along its output-channel axis (for `SeparableConv2D`, the pointwise
    kernel; the depthwise kernel belongs to no single filter). Weights that
    read already-pruned input channels are left out, so a norm reflects what
    the filter still computes. A group with several producers (a residual
    stage) scores the sum of its producers' norms, one per producer.

    Args:
        model: A functional model, usually from `make_prunable`.
        order: `1` or `2`.

    Returns:
        `{group name: float64 array of shape (group.size,)}`.
    """
    scores = {}
    for group in channel_groups(model):
        if not group.prunable:
            continue
        total = np.zeros(group.size, np.float64)
        for name in group.producers:
            layer = model.get_layer(name)
            input_mask = layer.input_mask.numpy() if isinstance(layer, MaskedLayer) else None
            inner = layer.layer if isinstance(layer, MaskedLayer) else layer
            for variable, axes in zip(inner.weights, channel_axes(inner)):
                out_axes = [axis for axis, (kind, _) in axes.items() if kind == "out"]
                if not is_kernel(variable) or not out_axes:
                    continue
                kernel = np.asarray(variable.numpy(), np.float64)
                for axis, (kind, expand) in axes.items():
                    if kind == "in" and input_mask is not None:
                        shape = [1] * kernel.ndim
                        shape[axis] = -1
                        kernel = kernel * np.repeat(input_mask, expand).reshape(shape)
                kernel = np.moveaxis(kernel, out_axes[0], -1).reshape(-1, kernel.shape[out_axes[0]])
                total += np.linalg.norm(kernel, ord=order, axis=0)
        scores[group.name] = total
    return scores


class L1Norm(Criterion):
    """L1 norm of each filter's kernel weights (Li et al., 2017; the paper's ILP baseline).

    See `filter_norms` for which weights count and how residual groups add up.
    """

    name = "l1"

    def _score(self, model, data):
        return filter_norms(model, 1)


class L2Norm(Criterion):
    """L2 norm of each filter's kernel weights.

    See `filter_norms` for which weights count and how residual groups add up.
    """

    name = "l2"

    def _score(self, model, data):
        return filter_norms(model, 2)


class RandomScore(Criterion):
    """Seeded random scores: the baseline every criterion must beat.

    Each group draws from its own generator, seeded by `seed` and the group's
    name, so a group's scores do not change when other groups appear or
    disappear, and every call with the same seed returns the same scores.
    Scores are uniform in (0, 1], so no live filter ties with a pruned one.

    Args:
        seed: The seed. Defaults to `0`.
    """

    name = "random"

    def __init__(self, seed=0):
        self.seed = check_int("seed", seed, minimum=0)

    def _score(self, model, data):
        scores = {}
        for group in channel_groups(model):
            if group.prunable:
                generator = np.random.default_rng([self.seed, zlib.crc32(group.name.encode())])
                scores[group.name] = 1.0 - generator.random(group.size)
        return scores

    def get_config(self):
        return {"seed": self.seed}


CRITERIA = {
    criterion.name: criterion for criterion in (ActivationAttention, L1Norm, L2Norm, APoZ, RandomScore)
}


def get_criterion(name, **options):
    """Returns the criterion called `name`, built with `options`.

    Args:
        name: `"attention"`, `"l1"`, `"l2"`, `"apoz"` or `"random"` (any
            case), or a `Criterion`, which is returned as it is.
        **options: Constructor arguments of the criterion (e.g. `power=2`
            for `"attention"`, `seed=3` for `"random"`).

    Returns:
        A `Criterion`.

    Raises:
        ConfigurationError: For an unknown name or options the criterion does
            not take.

    Example:

    >>> get_criterion("attention", power=2)
    ActivationAttention(power=2, mapping='mean', batch_size=None, max_samples=None)
    """
    if isinstance(name, Criterion):
        if options:
            raise ConfigurationError(
                f"get_criterion received the criterion {name!r} and options "
                f"{sorted(options)}; pass either a name with options or a built criterion."
            )
        return name
    key = str(name).lower().replace("-", "_")
    key = {"activation": "attention", "l1_norm": "l1", "l2_norm": "l2"}.get(key, key)
    if key not in CRITERIA:
        raise ConfigurationError(
            f"Unknown importance criterion {name!r}. Expected one of "
            f"{', '.join(repr(n) for n in CRITERIA)}."
        )
    try:
        return CRITERIA[key](**options)
    except TypeError as error:
        raise ConfigurationError(
            f"Criterion {key!r} ({CRITERIA[key].__name__}) does not take the "
            f"options {sorted(options)}: {error}."
        ) from error
