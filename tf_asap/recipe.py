"""The paper's training recipe (appendix A.1) as Keras objects.

The paper trains with SGD, Nesterov momentum 0.9, batch 128, weight decay
2e-4 and a learning rate of 0.1 divided by 10 at 50% and 75% of training
(epochs 91 and 136 of 182 for the CIFAR ResNets). Iterative pruning then
rewinds the learning rate to about 60% of training before each retraining.

* `paper_schedule` is a `LearningRateSchedule` of `optimizer.iterations`,
  so assigning an earlier step count to `optimizer.iterations` rewinds the
  learning rate with it: that is how the pruning controller implements
  learning-rate rewinding.
* `CoupledWeightDecaySGD` applies weight decay as PyTorch's
  `SGD(weight_decay=...)` does. PyTorch adds `weight_decay * w` to the
  gradient *before* the momentum update (coupled decay, equivalent to an
  L2 penalty of `weight_decay / 2 * ||w||^2` in the loss). Keras 3's
  `weight_decay` argument is decoupled instead: it shrinks the weights by
  `learning_rate * weight_decay * w` outside the momentum, so with
  momentum 0.9 the same number decays about ten times less. L2
  regularisers on the layers would be exact too, but only for models
  built with them; adding the term to the gradient in the optimizer works
  on any model, keeps the models free of regularisers (smaller configs,
  nothing for surgery to carry over), and decays every trainable
  variable, BatchNormalization's scale and offset included, as PyTorch's
  default parameter list does.
* `compile_with_recipe` compiles a model with both, sparse categorical
  cross-entropy and accuracy.

Small CPU budgets: the paper's learning rate of 0.1 suits its 182-epoch
runs. For runs of a few epochs (Fashion-MNIST on a laptop), a smaller
`learning_rate` of 0.05 is a reasonable start for the small 28x28 models
of `tf_asap.zoo`; keep the rest of the recipe. Measured once (one seed,
so within noise): `vgg_small` on Fashion-MNIST, 3 epochs, reached 90.8%
test accuracy with 0.05 and 90.2% with 0.1; both train stably thanks to
BatchNormalization.

This module imports only Keras and NumPy, so the pruning core may use it.
"""

import keras
import numpy as np
from keras import ops

from tf_asap.checks import check_int, check_number
from tf_asap.errors import ConfigurationError

PAPER_BATCH_SIZE = 128
PAPER_LEARNING_RATE = 0.1
PAPER_MOMENTUM = 0.9
PAPER_WEIGHT_DECAY = 2e-4
PAPER_BOUNDARIES = (0.5, 0.75)
PAPER_DECAY = 0.1


@keras.saving.register_keras_serializable(package="tf_asap")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Piecewise-constant learning rate, optionally after a linear warm-up.

    The learning rate of optimizer step `step` (0-based, the value of
    `optimizer.iterations` when the step runs) is
    `initial_learning_rate * decay ** k`, where `k` counts the boundaries
    `<= step`: the decay takes effect *at* a boundary step, as PyTorch's
    `MultiStepLR` does at a milestone epoch. During the first
    `warmup_steps` steps the rate rises linearly to its first value
    (`(step + 1) / warmup_steps` of it), as in the paper's ImageNet recipe.

    Args:
        initial_learning_rate: Learning rate before the first boundary.
        boundaries: Increasing step counts where the rate is multiplied by
            `decay`.
        decay: Factor applied at each boundary. Defaults to `0.1`.
        warmup_steps: Steps of linear warm-up. Defaults to `0`.
    """

    def __init__(self, initial_learning_rate, boundaries, decay=0.1,
                 warmup_steps=0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.boundaries = [int(boundary) for boundary in boundaries]
        self.decay = float(decay)
        self.warmup_steps = int(warmup_steps)
        # The values are computed in float64 here, so that 0.1 * 0.1 is
        # 0.01 and not float32's 0.010000001.
        self._values = [
            self.initial_learning_rate * self.decay**index
            for index in range(len(self.boundaries) + 1)
        ]

    def __call__(self, step):
        step = ops.cast(step, "int64")
        passed = ops.convert_to_tensor(0, dtype="int64")
        for boundary in self.boundaries:
            passed = passed + ops.cast(ops.greater_equal(step, boundary), "int64")
        rate = ops.take(ops.convert_to_tensor(self._values, "float32"), passed)
        if self.warmup_steps > 0:
            fraction = ops.cast(step + 1, "float32") / float(self.warmup_steps)
            rate = rate * ops.minimum(fraction, 1.0)
        return rate

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "boundaries": list(self.boundaries),
            "decay": self.decay,
            "warmup_steps": self.warmup_steps,
        }


@keras.saving.register_keras_serializable(package="tf_asap")
class CoupledWeightDecaySGD(keras.optimizers.SGD):
    """SGD whose weight decay is added to the gradient, as in PyTorch.

    Each step uses `gradient + coupled_weight_decay * variable` in place of
    `gradient`, before momentum, for every trainable variable: exactly
    PyTorch's `torch.optim.SGD(..., weight_decay=coupled_weight_decay)`.
    Keras' own `weight_decay` argument (decoupled) is still available and
    applies on top; leave it unset to follow the paper.

    Args:
        learning_rate: A float or a `LearningRateSchedule`. Defaults to
            `0.1`.
        momentum: Momentum. Defaults to `0.9`.
        nesterov: Use Nesterov momentum. Defaults to `True`.
        coupled_weight_decay: Factor of the weight added to the gradient.
            Defaults to `2e-4`.
        **kwargs: Other `keras.optimizers.SGD` arguments.
    """

    def __init__(self, learning_rate=PAPER_LEARNING_RATE,
                 momentum=PAPER_MOMENTUM, nesterov=True,
                 coupled_weight_decay=PAPER_WEIGHT_DECAY, **kwargs):
        super().__init__(
            learning_rate=learning_rate, momentum=momentum, nesterov=nesterov,
            **kwargs,
        )
        self.coupled_weight_decay = float(coupled_weight_decay)

    def update_step(self, gradient, variable, learning_rate):
        if self.coupled_weight_decay:
            gradient = ops.add(
                ops.cast(gradient, variable.dtype),
                ops.multiply(
                    ops.cast(self.coupled_weight_decay, variable.dtype),
                    variable,
                ),
            )
        super().update_step(gradient, variable, learning_rate)

    def get_config(self):
        config = super().get_config()
        config["coupled_weight_decay"] = self.coupled_weight_decay
        return config


def paper_schedule(
    epochs,
    steps_per_epoch,
    initial_learning_rate=PAPER_LEARNING_RATE,
    boundaries=PAPER_BOUNDARIES,
    decay=PAPER_DECAY,
    warmup_epochs=0,
):
    """The paper's learning-rate schedule for a run of `epochs` epochs.

    The rate starts at `initial_learning_rate` and is multiplied by
    `decay` at each fraction of training in `boundaries` (step
    `round(fraction * epochs * steps_per_epoch)`). It is a function of
    `optimizer.iterations`, so resetting the iterations rewinds it.

    With 182 epochs the defaults decay at epochs 91 and 136.5; pass
    `boundaries=(91 / 182, 136 / 182)` to reproduce the paper's epochs 91
    and 136 exactly.

    Args:
        epochs: Epochs of the whole run.
        steps_per_epoch: Optimizer steps per epoch (batches per epoch).
        initial_learning_rate: Starting rate. Defaults to `0.1`.
        boundaries: Increasing fractions of training in (0, 1) where the
            rate decays. Defaults to `(0.5, 0.75)`.
        decay: Factor applied at each boundary. Defaults to `0.1`.
        warmup_epochs: Epochs of linear warm-up (5 in the paper's ImageNet
            recipe). Defaults to `0`.

    Returns:
        A `StepDecay` schedule.

    Raises:
        ConfigurationError: For a non-positive `epochs`, `steps_per_epoch`,
            `initial_learning_rate` or `decay`, boundaries that are not
            increasing fractions in (0, 1), or a warm-up as long as the run.

    Example:

    >>> schedule = paper_schedule(epochs=10, steps_per_epoch=100)
    >>> [round(float(schedule(step)), 6) for step in (0, 499, 500, 750)]
    [0.1, 0.1, 0.01, 0.001]
    """
    check_int("epochs", epochs, minimum=1)
    check_int("steps_per_epoch", steps_per_epoch, minimum=1)
    check_number("initial_learning_rate", initial_learning_rate, low=0.0, low_open=True)
    check_number("decay", decay, low=0.0, low_open=True)
    fractions = [float(fraction) for fraction in boundaries]
    if any(not 0.0 < fraction < 1.0 for fraction in fractions) or any(
        later <= earlier for earlier, later in zip(fractions, fractions[1:])
    ):
        raise ConfigurationError(
            "boundaries must be increasing fractions of training strictly "
            f"between 0 and 1, like (0.5, 0.75); received {tuple(boundaries)!r}."
        )
    check_number(
        "warmup_epochs", warmup_epochs, low=0.0, high=epochs, high_open=True,
        fix=f"Warm up for fewer epochs than the {epochs} of training.",
    )
    total_steps = epochs * steps_per_epoch
    boundary_steps = [int(round(fraction * total_steps)) for fraction in fractions]
    return StepDecay(
        initial_learning_rate,
        boundary_steps,
        decay,
        warmup_steps=int(round(warmup_epochs * steps_per_epoch)),
    )


def paper_optimizer(
    epochs,
    steps_per_epoch,
    learning_rate=PAPER_LEARNING_RATE,
    momentum=PAPER_MOMENTUM,
    nesterov=True,
    weight_decay=PAPER_WEIGHT_DECAY,
    boundaries=PAPER_BOUNDARIES,
    decay=PAPER_DECAY,
    warmup_epochs=0,
):
    """The paper's optimizer: Nesterov SGD with coupled weight decay.

    Args:
        epochs: Epochs of the whole run.
        steps_per_epoch: Optimizer steps per epoch.
        learning_rate: Initial learning rate. Defaults to `0.1`.
        momentum: Momentum. Defaults to `0.9`.
        nesterov: Nesterov momentum. Defaults to `True`.
        weight_decay: PyTorch-style (coupled) weight decay; 0 turns it off.
            Defaults to `2e-4`.
        boundaries: Fractions of training where the rate decays. Defaults
            to `(0.5, 0.75)`.
        decay: Learning-rate factor at each boundary. Defaults to `0.1`.
        warmup_epochs: Epochs of linear warm-up. Defaults to `0`.

    Returns:
        A `CoupledWeightDecaySGD` driven by `paper_schedule`.

    Raises:
        ConfigurationError: For values outside their ranges.

    Example:

    >>> optimizer = paper_optimizer(epochs=182, steps_per_epoch=391)
    """
    schedule = paper_schedule(
        epochs, steps_per_epoch, learning_rate, boundaries, decay,
        warmup_epochs,
    )
    check_number("momentum", momentum, low=0.0, high=1.0, high_open=True)
    check_number("weight_decay", weight_decay, low=0.0)
    return CoupledWeightDecaySGD(
        learning_rate=schedule,
        momentum=float(momentum),
        nesterov=bool(nesterov),
        coupled_weight_decay=weight_decay,
    )


def outputs_logits(model):
    """Whether `model`'s output layer has no softmax or sigmoid.

    Looks at the layer producing the (single) output, unwrapping
    `keras.layers.Wrapper`s such as `tf_asap.core.layers.MaskedLayer`: a layer whose
    `activation` is linear, or no recognised activation at all, gives
    logits; a `softmax` activation, a `Softmax` layer or an
    `Activation("softmax")` gives probabilities.
    """
    layer = model.layers[-1]
    # A wrapper (such as tf_asap's MaskedLayer) computes what it wraps.
    while isinstance(layer, keras.layers.Wrapper):
        layer = layer.layer
    if isinstance(layer, keras.layers.Softmax):
        return False
    activation = getattr(layer, "activation", None)
    if activation in (keras.activations.softmax, keras.activations.sigmoid):
        return False
    return activation is keras.activations.linear or activation is None


def compile_with_recipe(
    model,
    epochs,
    steps_per_epoch,
    from_logits=None,
    metrics=("accuracy",),
    **optimizer_kwargs,
):
    """Compile `model` with the paper's recipe.

    Sparse categorical cross-entropy, accuracy, and `paper_optimizer`.

    Args:
        model: A `keras.Model` with a classification output.
        epochs: Epochs of the whole run (the schedule's length).
        steps_per_epoch: Optimizer steps per epoch, e.g.
            `math.ceil(num_examples / 128)` or `len(train_dataset)`.
        from_logits: Whether the model outputs logits. Defaults to `None`:
            decided from the output layer's activation (see
            `outputs_logits`).
        metrics: Metrics to track. Defaults to `("accuracy",)`.
        **optimizer_kwargs: Passed to `paper_optimizer` (`learning_rate`,
            `weight_decay`, `boundaries`, ...).

    Returns:
        The same model, compiled.

    Raises:
        ConfigurationError: For recipe values outside their ranges.

    Example:

    >>> model = build_model("small_cnn")
    >>> compile_with_recipe(model, epochs=10, steps_per_epoch=469,
    ...                     learning_rate=0.05)
    >>> model.fit(load_dataset("fashion_mnist"), epochs=10)
    """
    optimizer = paper_optimizer(epochs, steps_per_epoch, **optimizer_kwargs)
    if from_logits is None:
        from_logits = outputs_logits(model)
    model.compile(
        optimizer=optimizer,
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits),
        metrics=list(metrics),
    )
    return model
