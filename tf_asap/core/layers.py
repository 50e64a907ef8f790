"""Masked layers: Keras wrappers that carry the pruning masks of a model.

A pruned channel must contribute *nothing* downstream, or a physically
slimmed model cannot compute the same function as the masked one. Zeroing a
convolution's output is not enough: BatchNormalization turns a zero channel
into the constant `beta - gamma * moving_mean / sqrt(moving_variance + eps)`,
which survives ReLU and residual additions. tf_asap therefore masks on the
*consuming* side as well: every convolution or dense layer multiplies its
input channels by an input mask before computing. A channel that is masked at
every layer reading it has no effect on any output, and removing it (and every
weight that only serves it) yields exactly the same function.

Each `MaskedLayer` holds two non-trainable variables:

- `filter_mask`, one entry per output channel (filter) of the wrapped layer.
  This is the authoritative pruning state: `tf_asap.get_masks` reads it. The
  output is multiplied by it too, so pruned filters get no gradient and their
  activations read as zero.
- `input_mask`, one entry per input feature (input channels, or every feature
  of a flattened tensor for a `Dense` after `Flatten`). `tf_asap.apply_masks`
  derives it from the filter masks of the layers that produce those channels.

Both are ordinary layer weights, so they train with `model.fit`, save to and
load from `.keras` files, and are restored by `load_weights` and checkpoints.

Under `tf.distribute` the masks are mirrored variables that replicas never
disagree on: they are non-trainable (no gradient, no optimizer update),
synchronised on write (Keras' `"auto"` synchronization, which
`MirroredStrategy` resolves to `ON_WRITE`: every assignment reaches every
replica) and aggregated with `"only_first_replica"`, so an assignment made
inside a replica context writes the first replica's value everywhere instead
of summing or averaging copies of a 0/1 mask.
"""

import keras

from tf_asap.core import keras_graph, rules
from tf_asap.errors import UnsupportedLayerError


MASK_AGGREGATION = "only_first_replica"
"""How a mask assignment made on several replicas is combined (see the module docstring)."""


def is_maskable(layer):
    """Returns whether `layer` can be wrapped by `MaskedLayer`.

    A layer is maskable when its exact class has a producer rule in the
    registry (`tf_asap.core.rules`): Keras' convolutions and `Dense`, and any
    layer a user registered as a producer. A subclass of `Conv2D` may change
    what its channels mean, so it needs its own rule.
    """
    return rules.is_producer(layer)


def output_channels(layer):
    """Number of output channels (filters or units) of a maskable layer."""
    return rules.output_channels(layer)


def unwrap(op):
    """The layer a `MaskedLayer` wraps, or `op` itself."""
    return op.layer if isinstance(op, MaskedLayer) else op


@keras.saving.register_keras_serializable(package="tf_asap")
class MaskedLayer(keras.layers.Wrapper):
    """Wraps a convolution or dense layer with filter and input masks.

    Args:
        layer: The layer to wrap: one whose class has a producer rule
            (`tf_asap.core.rules`): a convolution, `Dense`, or a registered
            custom layer.
        min_filters: The fewest output channels pruning may leave in this
            layer's channel group. Defaults to `1`.
        prunable: Whether this layer's output channels may be pruned. Layers
            passed in `ignored_layers` are wrapped with `prunable=False`: they
            keep every filter but still mask their input channels, so that
            pruning the layers before them stays exact. Defaults to `True`.
        **kwargs: Base `Layer` arguments (`name`, `dtype`...).

    Example:

    >>> conv = MaskedLayer(keras.layers.Conv2D(8, 3), name="conv")
    >>> y = conv(keras.ops.ones((1, 5, 5, 3)))
    >>> conv.filter_mask.shape
    (8,)
    """

    def __init__(self, layer, min_filters=1, prunable=True, **kwargs):
        if not is_maskable(layer):
            raise UnsupportedLayerError(
                f"Cannot mask layer '{layer.name}' of type "
                f"{type(layer).__name__}: only layers with a producer rule "
                "(convolutions, Dense, or a class registered with "
                "tf_asap.register_layer(cls, tf_asap.LayerRule('producer', ...))) "
                "can be masked."
            )
        kwargs.setdefault("name", layer.name)
        super().__init__(layer, **kwargs)
        self.min_filters = int(min_filters)
        self.prunable = bool(prunable)

    def build(self, input_shape):
        super().build(input_shape)
        # The masks are float so that applying them is one multiply; they
        # only ever hold 0.0 or 1.0.
        self.filter_mask = self.add_weight(
            name="filter_mask",
            shape=(output_channels(self.layer),),
            initializer="ones",
            trainable=False,
            dtype="float32",
            aggregation=MASK_AGGREGATION,
        )
        self.input_mask = self.add_weight(
            name="input_mask",
            shape=(input_shape[-1],),
            initializer="ones",
            trainable=False,
            dtype="float32",
            aggregation=MASK_AGGREGATION,
        )

    def call(self, inputs):
        inputs = inputs * keras.ops.cast(self.input_mask, inputs.dtype)
        outputs = self.layer(inputs)
        return outputs * keras.ops.cast(self.filter_mask, outputs.dtype)

    def compute_output_shape(self, input_shape):
        try:
            return self.layer.compute_output_shape(input_shape)
        except NotImplementedError:
            # A custom layer without compute_output_shape: trace it symbolically.
            return self.layer.compute_output_spec(keras.KerasTensor(input_shape)).shape

    def get_config(self):
        config = super().get_config()
        config.update({"min_filters": self.min_filters, "prunable": self.prunable})
        return config


def clone_layer(layer):
    """A new layer computing what `layer` computes, for a rebuilt model.

    The layer is re-created from its config (weights are copied by the
    caller). A layer whose config cannot re-create it without running code
    (a `Lambda`: Keras' safe mode refuses to deserialize it, and tf_asap never
    switches safe mode off) or at all (a custom layer with an incomplete
    `get_config`) is deep-copied instead, without its graph connections.

    Raises:
        UnsupportedLayerError: If the layer can be neither re-created nor
            copied.
    """
    if not isinstance(layer, keras.layers.Layer):
        return layer  # A stateless keras.ops operation can be reused as is.
    try:
        return type(layer).from_config(layer.get_config())
    except Exception as config_error:  # noqa: BLE001 - fall back to a copy
        try:
            return keras_graph.detached_copy(layer)
        except Exception as error:  # noqa: BLE001 - any failure means the same fix
            raise UnsupportedLayerError(
                f"Cannot copy layer '{layer.name}' of type {type(layer).__name__}: "
                f"re-creating it from its config failed ({config_error}), and so did "
                f"copying it ({error}). Give the layer a get_config() that returns "
                "every constructor argument."
            ) from error
