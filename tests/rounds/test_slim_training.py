import functools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests.architectures import (
    bn_offset_model,
    densenet_block,
    plain_cnn,
    randomize_batchnorm,
    resnet20,
    sequential_cnn,
)
from tf_asap.core.analysis import channel_groups
from tf_asap.core.masks import apply_masks, get_masks, make_prunable
from tf_asap.errors import ConfigurationError
from tf_asap.rounds.controller import restore_state, snapshot_state
from tf_asap.rounds.distillation import Distiller
from tf_asap.rounds.slim_training import build_slim_trainable, slicing_plan, train_slim, write_back

layers = keras.layers


def bn_cnn():
    """Conv-BN-ReLU twice, then Flatten into Dense: no dropout, so steps are deterministic."""
    inputs = keras.Input((8, 8, 3))
    x = layers.Conv2D(6, 3, padding="same", name="conv0")(inputs)
    x = layers.BatchNormalization(name="bn0")(x)
    x = layers.ReLU(name="relu0")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(8, 3, padding="same", name="conv1")(x)
    x = layers.BatchNormalization(name="bn1")(x)
    x = layers.ReLU(name="relu1")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(10, activation="relu", name="fc")(x)
    outputs = layers.Dense(4, activation="softmax", name="predictions")(x)
    return randomize_batchnorm(keras.Model(inputs, outputs, name="bn_cnn"))


def small_resnet():
    return resnet20(input_shape=(8, 8, 3), blocks=1, widths=(4, 6, 8))


def data(count=24, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, 8, 8, 3)).astype("float32")
    y = rng.integers(0, 4, count).astype("int32")
    return x, y


def random_masks(model, seed=2):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in channel_groups(model):
        if group.prunable:
            keep = rng.random(group.size) < 0.5
            keep[rng.integers(group.size)] = True
            masks[group.name] = keep
    return masks


def masked_model(build, optimizer):
    """A prunable model trained a few steps (non-zero slots everywhere), then masked."""
    pm = make_prunable(build())
    pm.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    x, y = data(seed=5)
    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    apply_masks(pm, random_masks(pm))
    return pm


def kept_values(pm, plan):
    return [entry.take(v.numpy()) for v, entry in zip(pm.weights, plan.slices) if entry is not None]


@pytest.mark.parametrize("build", [bn_cnn, small_resnet], ids=["bn_cnn", "resnet"])
def test_sgd_steps_on_slim_model_equal_steps_on_masked_model(build):
    pm = masked_model(build, keras.optimizers.SGD(0.05, momentum=0.9))
    plan = slicing_plan(pm)
    state = snapshot_state(pm)
    x, y = data()

    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected_weights = kept_values(pm, plan)
    expected_outputs = pm.predict(x, verbose=0)
    expected_iterations = int(pm.optimizer.iterations.numpy())

    restore_state(pm, state)
    slim_model, _ = build_slim_trainable(pm, state, plan, loss="sparse_categorical_crossentropy")
    slim_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    write_back(pm, slim_model, plan, optimizer=True)

    for got, want in zip(kept_values(pm, plan), expected_weights):
        np.testing.assert_allclose(got, want, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(pm.predict(x, verbose=0), expected_outputs, atol=2e-5, rtol=1e-4)
    np.testing.assert_allclose(slim_model.predict(x, verbose=0), expected_outputs, atol=2e-5, rtol=1e-4)
    assert int(pm.optimizer.iterations.numpy()) == expected_iterations == 3 + 3


@pytest.mark.parametrize(
    "build",
    [plain_cnn, densenet_block, bn_offset_model, sequential_cnn],
    ids=["flatten_dense", "concatenate", "depthwise_prelu_separable", "sequential"],
)
def test_a_momentum_step_on_the_slim_model_matches_the_masked_model_on_many_layer_types(build):
    pm = make_prunable(build())
    pm.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(4)
    x = rng.normal(size=(16,) + tuple(pm.input_shape[1:])).astype("float32")
    y = rng.integers(0, pm.output_shape[-1], 16).astype("int32")
    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    apply_masks(pm, random_masks(pm))
    plan, state = slicing_plan(pm), snapshot_state(pm)
    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = pm.predict(x, verbose=0)

    restore_state(pm, state)
    slim_model, _ = build_slim_trainable(pm, state, plan, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    slim_model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    write_back(pm, slim_model, plan)
    np.testing.assert_allclose(pm.predict(x, verbose=0), expected, atol=2e-5, rtol=1e-4)


def test_batchnorm_statistics_and_adam_slots_are_sliced_at_the_kept_channels():
    pm = masked_model(bn_cnn, keras.optimizers.Adam(0.01))
    keep = get_masks(pm)
    state = snapshot_state(pm)
    slim_model, optimizer = build_slim_trainable(pm, state, loss="sparse_categorical_crossentropy")

    keep0, keep1 = np.flatnonzero(keep["conv0"]), np.flatnonzero(keep["conv1"])
    np.testing.assert_array_equal(
        slim_model.get_layer("bn1").moving_mean.numpy(),
        pm.get_layer("bn1").moving_mean.numpy()[keep1],
    )
    np.testing.assert_array_equal(
        slim_model.get_layer("bn0").moving_variance.numpy(),
        pm.get_layer("bn0").moving_variance.numpy()[keep0],
    )
    saved = dict(state.optimizer)
    slots = {v.path.split("/", 1)[-1]: v.numpy() for v in optimizer.variables}
    full = saved["conv1_conv1_kernel_velocity"]
    np.testing.assert_array_equal(slots["conv1_kernel_velocity"], full[:, :, keep0][..., keep1])
    full = saved["fc_fc_kernel_momentum"]
    # After Flatten (4x4 positions of 8 channels) the kept rows repeat per position.
    rows = np.flatnonzero(np.tile(keep["conv1"], 16))
    np.testing.assert_array_equal(slots["fc_kernel_momentum"], full[rows][:, np.flatnonzero(keep["fc"])])
    assert int(optimizer.iterations.numpy()) == int(saved["iteration"]) == 3


def test_sgd_momentum_slots_are_sliced_on_a_residual_group():
    pm = masked_model(small_resnet, keras.optimizers.SGD(0.05, momentum=0.9))
    state = snapshot_state(pm)
    _, optimizer = build_slim_trainable(pm, state, loss="sparse_categorical_crossentropy")
    keep = get_masks(pm)
    stage = np.flatnonzero(keep["s1b0_proj"])  # the Add couples the projection with conv2
    slots = {v.path.split("/", 1)[-1]: v.numpy() for v in optimizer.variables}
    saved = dict(state.optimizer)
    for layer in ("s1b0_proj", "s1b0_conv2"):
        np.testing.assert_array_equal(
            slots[f"{layer}_bias_momentum"], saved[f"{layer}_{layer}_bias_momentum"][stage]
        )
    np.testing.assert_array_equal(
        slots["s1b0_bn2_gamma_momentum"], saved["s1b0_bn2_gamma_momentum"][stage]
    )


def test_write_back_of_an_untrained_slim_model_leaves_the_masked_model_unchanged():
    pm = masked_model(small_resnet, keras.optimizers.Adam(0.01))
    before = snapshot_state(pm)
    plan = slicing_plan(pm)
    slim_model, _ = build_slim_trainable(pm, before, plan, loss="sparse_categorical_crossentropy")
    write_back(pm, slim_model, plan, optimizer=True)
    after = snapshot_state(pm)
    for (name, old), (_, new) in zip(before.weights + before.optimizer, after.weights + after.optimizer):
        np.testing.assert_array_equal(new, old, err_msg=name)


def test_rewinding_to_an_earlier_state_starts_the_slim_model_there():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05, momentum=0.9))
    rewind = snapshot_state(pm)
    x, y = data()
    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # moves past the rewind point
    slim_model, optimizer = build_slim_trainable(pm, rewind, loss="sparse_categorical_crossentropy")
    restore_state(pm, rewind)
    np.testing.assert_allclose(slim_model.predict(x, verbose=0), pm.predict(x, verbose=0), atol=1e-5)
    assert int(optimizer.iterations.numpy()) == 3


def test_state_without_weights_uses_current_weights_and_fresh_optimizer_when_none():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05, momentum=0.9))
    x, _ = data()
    slim_model, optimizer = build_slim_trainable(pm, loss="sparse_categorical_crossentropy")
    np.testing.assert_allclose(slim_model.predict(x, verbose=0), pm.predict(x, verbose=0), atol=1e-5)
    assert int(optimizer.iterations.numpy()) == 0
    assert all(not np.any(v.numpy()) for v in optimizer.variables[2:])


def test_pruned_positions_keep_their_values_after_write_back():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05, momentum=0.9))
    plan = slicing_plan(pm)
    pruned = ~get_masks(pm)["conv1"]
    before = pm.get_layer("conv1").layer.kernel.numpy()[..., pruned]
    slim_model, _ = build_slim_trainable(pm, snapshot_state(pm), plan, loss="sparse_categorical_crossentropy")
    slim_model.fit(*data(), batch_size=8, epochs=1, verbose=0)
    write_back(pm, slim_model, plan)
    np.testing.assert_array_equal(pm.get_layer("conv1").layer.kernel.numpy()[..., pruned], before)


def test_a_plan_made_for_other_masks_is_refused_with_the_fix():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05))
    plan = slicing_plan(pm)
    assert not get_masks(pm)["conv0"].all()
    apply_masks(pm, {"conv0": np.ones(6, bool)})
    with pytest.raises(ConfigurationError, match="slicing_plan\\(masked_model\\)"):
        build_slim_trainable(pm, plan=plan)


def test_a_model_without_masks_is_refused():
    with pytest.raises(ConfigurationError, match="make_prunable"):
        slicing_plan(bn_cnn())


def test_a_state_from_another_model_is_refused():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05))
    other = snapshot_state(make_prunable(small_resnet()), optimizer=False)
    with pytest.raises(ConfigurationError, match="do not fit"):
        build_slim_trainable(pm, other)


def test_an_uncompiled_model_without_optimizer_is_refused():
    pm = make_prunable(bn_cnn())
    with pytest.raises(ConfigurationError, match="optimizer="):
        build_slim_trainable(pm)


def test_train_slim_trains_and_writes_back_in_one_call():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05, momentum=0.9))
    plan, state = slicing_plan(pm), snapshot_state(pm)
    x, y = data()
    pm.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)
    expected = pm.predict(x, verbose=0)

    restore_state(pm, state)
    history = train_slim(
        pm, tf.data.Dataset.from_tensor_slices((x, y)).batch(8), state=state,
        loss="sparse_categorical_crossentropy", epochs=1, shuffle=False, verbose=0,
    )
    assert len(history.history["loss"]) == 1
    np.testing.assert_allclose(pm.predict(x, verbose=0), expected, atol=2e-5, rtol=1e-4)
    assert int(pm.optimizer.iterations.numpy()) == 6
    assert slicing_plan(pm).mask_digest == plan.mask_digest  # masks untouched


def test_train_slim_with_a_distiller_at_alpha_one_equals_plain_slim_training():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05, momentum=0.9))
    state = snapshot_state(pm)
    x, y = data()
    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(8)
    loss = "sparse_categorical_crossentropy"
    train_slim(pm, train, state=state, loss=loss, epochs=1, shuffle=False, verbose=0)
    expected = pm.predict(x, verbose=0)
    restore_state(pm, state)
    teacher = bn_cnn()
    train_slim(
        pm, train, state=state, loss=loss, epochs=1, shuffle=False, verbose=0,
        trainer=functools.partial(Distiller, teacher=teacher, alpha=1.0),
    )
    np.testing.assert_allclose(pm.predict(x, verbose=0), expected, atol=1e-5)


def test_a_trainer_that_returns_no_model_is_refused():
    pm = masked_model(bn_cnn, keras.optimizers.SGD(0.05))
    with pytest.raises(ConfigurationError, match="functools.partial"):
        train_slim(pm, data(), trainer=lambda model: "not a model", epochs=1)
