"""Retraining the physically slimmed model instead of the masked one.

A round of Algorithm 1 retrains the model after its masks are chosen. The
masked model spends the full dense FLOPs on channels that are multiplied by
zero; the slimmed model (`tf_asap.core.surgery.slim`) computes the same
function with the pruned channels removed, so it trains faster (see
`benchmarks/bench_engine.py` for the measured epoch-time ratio).

Training the slim model gives the same result as training the masked one
because a pruned channel contributes nothing anywhere downstream
(`tf_asap.core.layers`): the loss depends on the kept weights only, through
the same function in both models, so their gradients are equal, and an
optimizer whose slots are sliced the same way makes the same update. Pruned
positions of the masked model get zero gradient, so only their stale
momentum could move them, which changes nothing the model computes.

The masks stay the record: the masked model is what run directories save,
roll back and resume. One round is one call, `train_slim`, or three:

```python
plan = slicing_plan(masked_model)                  # once per set of masks
slim_model, optimizer = build_slim_trainable(
    masked_model, rewind_state, plan, optimizer=masked_model.optimizer)
slim_model.fit(train, epochs=epochs, initial_epoch=rewind_epoch)
write_back(masked_model, slim_model, plan, optimizer=True)
```

`train_slim(..., trainer=...)` wraps the slim model for training, e.g. in a
`tf_asap.rounds.distillation.Distiller`.

`build_slim_trainable` starts the slim model from any `ModelState` of the
masked model (the rewind checkpoint, or the current state): weights,
BatchNormalization statistics and optimizer slots are sliced with the same
channel-keep indices that surgery uses. `write_back` puts the trained
values back at the kept positions, leaving pruned positions as they were.
"""

import keras
import numpy as np

from tf_asap.checks import check_bool
from tf_asap.core.masks import is_prunable_model, mask_digest
from tf_asap.core.surgery import slim
from tf_asap.errors import ConfigurationError
from tf_asap.recipe import outputs_logits
from tf_asap.rounds.slicing import SlicingPlan, VariableSlice, slicing_plan  # noqa: F401
from tf_asap.rounds.state import ModelState, optimizer_variable_name, snapshot_state
from tf_asap.rounds.training import fresh_optimizer


# ---------------------------------------------------------------------------
# Optimizer slots.


def _slot_references(optimizer_variables, model_variables):
    """For each optimizer variable: `(model variable index, slot suffix)` or `(None, name)`.

    Keras names a slot `{reference.path with '/' -> '_'}_{slot}` and gives it
    the reference's shape (`Optimizer.add_variable_from_reference`); the
    longest matching prefix of the right shape is the reference.
    """
    prefixes = [variable.path.replace("/", "_") + "_" for variable in model_variables]
    found = []
    for variable in optimizer_variables:
        name = optimizer_variable_name(variable)
        best = None
        for index, prefix in enumerate(prefixes):
            if name.startswith(prefix) and tuple(variable.shape) == tuple(model_variables[index].shape):
                if best is None or len(prefix) > len(prefixes[best]):
                    best = index
        found.append((best, name[len(prefixes[best]):] if best is not None else name))
    return found


def _fresh_optimizer(optimizer):
    """A new, unbuilt optimizer with the configuration of `optimizer`.

    Accepts an optimizer instance (its config is copied, the instance is not
    reused: it refuses variables other than the ones it was built for), a
    serialized optimizer (dict) or a name such as `"sgd"`.
    """
    if isinstance(optimizer, keras.optimizers.Optimizer):
        return fresh_optimizer(optimizer)
    if isinstance(optimizer, (dict, str)):
        try:
            return keras.optimizers.get(optimizer)
        except (ValueError, TypeError) as error:
            raise ConfigurationError(
                f"optimizer={optimizer!r} is not a Keras optimizer ({error}). Pass an "
                "optimizer instance, keras.optimizers.serialize(optimizer), or a "
                "name such as 'sgd'."
            ) from error
    raise ConfigurationError(
        "optimizer must be a keras.optimizers.Optimizer, a serialized optimizer "
        f"(dict) or a name; received {type(optimizer).__name__}. Pass "
        "masked_model.optimizer to keep the masked model's configuration."
    )


def _check_state_fits(kind, expected, saved):
    if len(expected) != len(saved):
        problem = f"{len(saved)} saved arrays for {len(expected)} variables"
    else:
        problem = next(
            (
                f"'{name}' has shape {tuple(np.shape(value))}, expected {tuple(shape)}"
                for (name, value), shape in zip(saved, expected)
                if tuple(np.shape(value)) != tuple(shape)
            ),
            None,
        )
    if problem:
        raise ConfigurationError(
            f"The state's {kind} do not fit the masked model ({problem}). Pass a "
            "state taken from this model with snapshot_state(masked_model), with "
            "an optimizer of the same kind as `optimizer`."
        )


def _masked_slot_keys(optimizer_variables, masked_model, plan):
    """For each optimizer variable of the masked model: `(key, VariableSlice or None)`.

    The key, `((layer, position) or None, slot suffix or name)`, names the
    matching variable of the slim model's optimizer (see `_optimizer_keys`).
    """
    weight_index = {id(v): i for i, v in enumerate(masked_model.weights)}
    trainable = masked_model.trainable_variables
    found = []
    for reference, suffix in _slot_references(optimizer_variables, trainable):
        if reference is None:
            found.append(((None, suffix), None))
            continue
        entry = plan.slices[weight_index[id(trainable[reference])]]
        found.append((((entry.layer, entry.position), suffix), entry))
    return found


def _sliced_optimizer_values(state_optimizer, masked_model, optimizer, plan):
    """{key: sliced array} of a saved optimizer state (keys as `_masked_slot_keys`)."""
    probe = _fresh_optimizer(optimizer)
    probe.build(masked_model.trainable_variables)
    _check_state_fits("optimizer variables", [v.shape for v in probe.variables], state_optimizer)
    return {
        key: np.asarray(value) if entry is None else entry.take(value)
        for (key, entry), (_, value) in zip(
            _masked_slot_keys(probe.variables, masked_model, plan), state_optimizer
        )
    }


# ---------------------------------------------------------------------------
# Building the slim model and writing it back.


def _check_plan(masked_model, plan):
    if not isinstance(plan, SlicingPlan):
        raise ConfigurationError(
            f"plan must be a SlicingPlan; received {type(plan).__name__}. Make "
            "one with slicing_plan(masked_model)."
        )
    if len(plan.slices) != len(masked_model.weights) or plan.mask_digest != mask_digest(masked_model):
        raise ConfigurationError(
            f"The slicing plan was made for other masks than model "
            f"'{masked_model.name}' has now. Make a new plan with "
            "slicing_plan(masked_model) after every change of masks."
        )


def _slim_variables(slim_model, plan):
    """{(layer, position): slim-model variable}."""
    return {
        (entry.layer, entry.position): slim_model.get_layer(entry.layer).weights[entry.position]
        for entry in plan.slices
        if entry is not None
    }


def build_slim_trainable(
    masked_model,
    state=None,
    plan=None,
    optimizer=None,
    loss=None,
    metrics=("accuracy",),
):
    """Builds the slimmed model, started from a state of the masked model, ready to train.

    Args:
        masked_model: A model from `tf_asap.make_prunable` with its masks set.
        state: A `ModelState` of `masked_model` to start from (for example
            the rewind checkpoint): its weights and BatchNormalization
            statistics, sliced, become the slim model's; its optimizer
            variables, sliced, become the new optimizer's (iterations, hence
            the learning-rate schedule's position, included). A state
            without weights (learning-rate rewinding) takes the masked
            model's current weights; a state without optimizer variables
            starts a fresh optimizer. Defaults to `None`: the current weights
            and a fresh optimizer.
        plan: The `SlicingPlan` of the model's current masks. Defaults to
            `None`: made here.
        optimizer: The optimizer whose configuration the slim model trains
            with (an instance, whose variables are not touched, a serialized
            dict or a name). Defaults to `None`: `masked_model.optimizer`.
        loss: The loss to compile with. Defaults to `None`: sparse
            categorical cross-entropy, from logits when the model outputs
            logits.
        metrics: Metrics to compile with. Defaults to `("accuracy",)`.

    Returns:
        `(slim_model, slim_optimizer)`: the compiled slim model and its built
        optimizer.

    Raises:
        ConfigurationError: For a model without masks or optimizer, a plan
            made for other masks, or a state that does not fit the model.

    Example:

    >>> slim_model, _ = build_slim_trainable(pm, snapshot_state(pm), plan)
    >>> slim_model.fit(x, y, epochs=1)
    >>> write_back(pm, slim_model, plan)
    """
    plan = slicing_plan(masked_model) if plan is None else plan
    _check_plan(masked_model, plan)
    if optimizer is None:
        optimizer = getattr(masked_model, "optimizer", None)
        if optimizer is None:
            raise ConfigurationError(
                f"Model '{masked_model.name}' is not compiled and no optimizer was "
                "given, so the slim model has no optimizer configuration. Pass "
                "optimizer=... or compile the masked model first."
            )
    if state is None:
        state = ModelState([], None)
    if not isinstance(state, ModelState):
        raise ConfigurationError(
            f"state must be a ModelState; received {type(state).__name__}. Take "
            "one with tf_asap.rounds.state.snapshot_state(masked_model)."
        )
    weights = state.weights or snapshot_state(masked_model, optimizer=False).weights
    _check_state_fits("weights", [v.shape for v in masked_model.weights], weights)

    slim_model = slim(masked_model)
    targets = _slim_variables(slim_model, plan)
    for key, value in plan.slice_weights([value for _, value in weights]).items():
        targets[key].assign(value)

    slim_optimizer = _fresh_optimizer(optimizer)
    loss = _default_loss(masked_model, loss)
    slim_model.compile(optimizer=slim_optimizer, loss=loss, metrics=list(metrics or []))
    slim_optimizer.build(slim_model.trainable_variables)
    if state.optimizer is not None:
        sliced = _sliced_optimizer_values(state.optimizer, masked_model, optimizer, plan)
        _assign_optimizer(slim_optimizer, slim_model, plan, sliced)
    return slim_model, slim_optimizer


def _default_loss(masked_model, loss):
    if loss is not None:
        return loss
    return keras.losses.SparseCategoricalCrossentropy(from_logits=outputs_logits(masked_model))


def _optimizer_keys(optimizer, model, plan):
    """The key of each optimizer variable, as `_sliced_optimizer_values` makes them."""
    location = {id(variable): key for key, variable in _slim_variables(model, plan).items()}
    trainable = model.trainable_variables
    return [
        (None if reference is None else location[id(trainable[reference])], suffix)
        for reference, suffix in _slot_references(optimizer.variables, trainable)
    ]


def _assign_optimizer(optimizer, model, plan, values):
    for variable, key in zip(optimizer.variables, _optimizer_keys(optimizer, model, plan)):
        if key not in values:
            raise ConfigurationError(
                f"Optimizer variable '{variable.path}' has no counterpart in the "
                "saved optimizer state. Pass the same kind of optimizer as the one "
                "the state was taken from."
            )
        variable.assign(values[key])


def write_back(masked_model, slim_model, plan, optimizer=False):
    """Writes the slim model's weights (and optimizer slots) into the masked model.

    Every variable of `masked_model` but the masks gets the slim model's
    values at its kept positions; pruned positions keep what they held, and
    the masks are untouched, so the masked model computes what the slim
    model computes.

    Args:
        masked_model: The model the slim model was built from.
        slim_model: The slim model returned by `build_slim_trainable`.
        plan: The `SlicingPlan` both were built with.
        optimizer: Also write the slim model's optimizer variables
            (iterations and slots) into `masked_model.optimizer`, which must
            be compiled with the same kind of optimizer (it is built if it was
            not yet). Defaults to `False`.

    Raises:
        ConfigurationError: If the plan is not the masked model's current
            one, or `optimizer=True` and the masked model is not compiled.
    """
    optimizer = check_bool("optimizer", optimizer)
    _check_plan(masked_model, plan)
    sources = _slim_variables(slim_model, plan)
    for variable, entry in zip(masked_model.weights, plan.slices):
        if entry is not None:
            variable.assign(entry.put(variable.numpy(), sources[(entry.layer, entry.position)].numpy()))
    if not optimizer:
        return
    target = getattr(masked_model, "optimizer", None)
    if target is None or slim_model.optimizer is None:
        raise ConfigurationError(
            f"write_back(optimizer=True) needs both models compiled; model "
            f"'{masked_model.name if target is None else slim_model.name}' is not. "
            "Compile the masked model with the same kind of optimizer, or pass "
            "optimizer=False."
        )
    if not target.built:
        target.build(masked_model.trainable_variables)
    slim_values = dict(
        zip(_optimizer_keys(slim_model.optimizer, slim_model, plan), slim_model.optimizer.variables)
    )
    for variable, (key, entry) in zip(
        target.variables, _masked_slot_keys(target.variables, masked_model, plan)
    ):
        source = slim_values.get(key)
        if source is None and entry is not None:
            raise ConfigurationError(
                f"Optimizer variable '{variable.path}' of the masked model has no "
                "counterpart in the slim model's optimizer. Compile the masked "
                "model with the same kind of optimizer as the slim model."
            )
        if source is not None:
            value = source.numpy()
            variable.assign(value if entry is None else entry.put(variable.numpy(), value))

def train_slim(
    masked_model,
    data,
    state=None,
    optimizer=None,
    loss=None,
    metrics=("accuracy",),
    trainer=None,
    **fit_kwargs,
):
    """Retrains a masked model by training its slimmed copy, then writes the result back.

    `build_slim_trainable`, `fit` and `write_back` in one call: the slim
    model starts from `state`, trains on `data`, and its weights (and
    optimizer state, when the masked model is compiled) go back into
    `masked_model` at the kept positions.

    Args:
        masked_model: A model from `tf_asap.make_prunable` with its masks set.
        data: Training data, as `keras.Model.fit` takes it (`x`).
        state: The `ModelState` to start from. Defaults to `None`: the
            current weights and a fresh optimizer.
        optimizer: As in `build_slim_trainable`. Defaults to `None`:
            `masked_model.optimizer`.
        loss: As in `build_slim_trainable`. Defaults to `None`.
        metrics: As in `build_slim_trainable`. Defaults to `("accuracy",)`.
        trainer: Optional `trainer(slim_model) -> keras.Model` that wraps the
            slim model for training (for example
            `functools.partial(Distiller, teacher=teacher)`); the wrapper is
            compiled with the slim model's optimizer, loss and metrics.
            Defaults to `None`: the slim model trains itself.
        **fit_kwargs: Passed to `fit` (`epochs`, `initial_epoch`,
            `callbacks`, `verbose`...).

    Returns:
        The `History` of `fit`.

    Example:

    >>> history = train_slim(pm, train, state=rewind_state, epochs=4,
    ...                      initial_epoch=2)
    """
    plan = slicing_plan(masked_model)
    loss = _default_loss(masked_model, loss)
    slim_model, slim_optimizer = build_slim_trainable(
        masked_model, state, plan, optimizer=optimizer, loss=loss, metrics=metrics
    )
    model = slim_model
    if trainer is not None:
        model = trainer(slim_model)
        if not isinstance(model, keras.Model):
            raise ConfigurationError(
                f"trainer must return a keras.Model wrapping the slim model; it "
                f"returned {type(model).__name__}. For distillation pass "
                "functools.partial(Distiller, teacher=teacher)."
            )
        model.compile(optimizer=slim_optimizer, loss=loss, metrics=list(metrics or []))
    history = model.fit(data, **fit_kwargs)
    write_back(
        masked_model, slim_model, plan,
        optimizer=getattr(masked_model, "optimizer", None) is not None,
    )
    return history
