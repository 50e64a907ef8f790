"""Keras callbacks that bring tf_asap into a user's own `model.fit`."""

import keras
import numpy as np

from tf_asap.checks import check_bool, check_int
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.stats import check_attention_options, stats_collector


class ActivationStatsCallback(keras.callbacks.Callback):
    """Refreshes activation statistics at chosen epochs of `model.fit`.

    At the end of each chosen epoch, runs the calibration data through the
    model being trained (with `training=False`, through the same cached
    auxiliary model as `tf_asap.collect_activation_stats`) and stores the
    per-filter attention of every prunable channel group, so that pruning
    can use statistics from the training run itself rather than a separate
    pass afterwards.

    Args:
        calibration_data: Arrays `x` or `(x, y)`, a `tf.data.Dataset` or a
            function returning a generator (it is iterated once per refresh,
            so a bare generator only works for one refresh). Labels are
            ignored.
        epochs: When to refresh: `None` for every epoch; an integer `n` for
            every `n`-th epoch (after epochs `n - 1, 2n - 1, ...` in Keras'
            0-based numbering, i.e. the `n`-th, `2n`-th... epoch shown in the
            progress bar); a list of 0-based epoch indices (as passed to
            `on_epoch_end`). Defaults to `None`.
        power: The exponent `p`. Defaults to `1`.
        mapping: `"mean"`, `"max"` or `"sum"`. Defaults to `"mean"`.
        apoz: Also gather APoZ. Defaults to `False`.
        max_samples: Use at most this many calibration samples per refresh.
            Defaults to `None` (all).
        batch_size: Calibration batch size. Defaults to `None` (batched data
            keeps its batches, arrays are batched by 128).

    Attributes:
        attention: `{group name: array}` of the latest refresh (`None`
            before the first).
        statistics: The latest `tf_asap.pruning.stats.ActivationStatistics`.
        history: `{epoch index: {group name: array}}` of every refresh.

    Example:

    >>> stats = ActivationStatsCallback((x_val, y_val), epochs=[4, 9])
    >>> pm.fit(x_train, y_train, epochs=10, callbacks=[stats])
    >>> masks = tf_asap.threshold_masks(pm, stats.attention, threshold=0.0)
    """

    def __init__(
        self,
        calibration_data,
        epochs=None,
        power=1,
        mapping="mean",
        apoz=False,
        max_samples=None,
        batch_size=None,
    ):
        super().__init__()
        check_attention_options(power, mapping)
        self.calibration_data = calibration_data
        self.epochs = _check_epochs(epochs)
        self.power = power
        self.mapping = mapping
        self.apoz = check_bool("apoz", apoz)
        self.max_samples = max_samples
        self.batch_size = batch_size
        self.statistics = None
        self.history = {}

    @property
    def attention(self):
        return None if self.statistics is None else self.statistics.attention

    def refreshes_at(self, epoch):
        """Whether statistics are gathered at the end of 0-based `epoch`."""
        if self.epochs is None:
            return True
        if isinstance(self.epochs, frozenset):
            return epoch in self.epochs
        return (epoch + 1) % self.epochs == 0

    def on_epoch_end(self, epoch, logs=None):
        if not self.refreshes_at(epoch):
            return
        self.statistics = stats_collector(self.model).collect(
            self.calibration_data,
            power=self.power,
            mapping=self.mapping,
            apoz=self.apoz,
            batch_size=self.batch_size,
            max_samples=self.max_samples,
        )
        self.history[epoch] = self.statistics.attention


def _check_epochs(epochs):
    """`None`, an interval `n >= 1`, or a frozenset of 0-based epoch indices."""
    fix = (
        "Pass None (every epoch), a positive interval n (every n-th epoch) or a "
        "list of 0-based epoch indices."
    )
    if epochs is None:
        return None
    if isinstance(epochs, (list, tuple, set, frozenset, range)):
        return frozenset(check_int(f"epochs[{i}]", e, minimum=0, fix=fix) for i, e in enumerate(epochs))
    if isinstance(epochs, bool) or not isinstance(epochs, (int, np.integer)):
        raise ConfigurationError(
            f"`epochs` must be None, an integer >= 1 or a list of integers; received {epochs!r}. {fix}"
        )
    return check_int("epochs", epochs, minimum=1, fix=fix)
