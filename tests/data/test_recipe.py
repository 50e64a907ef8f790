import keras
import numpy as np
import pytest

from tf_asap import recipe
from tf_asap.errors import ConfigurationError


def learning_rate_at(schedule, step):
    return float(schedule(step))


def tiny_model(activation="softmax"):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(8, activation="relu")(inputs)
    outputs = keras.layers.Dense(3, activation=activation)(hidden)
    return keras.Model(inputs, outputs)


def test_schedule_decays_tenfold_at_half_and_three_quarters():
    schedule = recipe.paper_schedule(epochs=10, steps_per_epoch=100)
    assert isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule)
    expected = {0: 0.1, 499: 0.1, 500: 0.01, 749: 0.01, 750: 0.001, 5000: 0.001}
    for step, rate in expected.items():
        assert learning_rate_at(schedule, step) == pytest.approx(rate, rel=1e-6)


def test_schedule_reproduces_paper_epochs_91_and_136():
    steps_per_epoch = 391  # 50,000 CIFAR images in batches of 128
    schedule = recipe.paper_schedule(
        182, steps_per_epoch, boundaries=(91 / 182, 136 / 182)
    )
    assert schedule.boundaries == [91 * steps_per_epoch, 136 * steps_per_epoch]
    default = recipe.paper_schedule(182, steps_per_epoch)
    assert default.boundaries == [91 * steps_per_epoch, round(136.5 * steps_per_epoch)]


def test_schedule_warms_up_linearly():
    schedule = recipe.paper_schedule(
        10, 10, initial_learning_rate=0.256, warmup_epochs=2
    )
    assert learning_rate_at(schedule, 0) == pytest.approx(0.256 / 20)
    assert learning_rate_at(schedule, 9) == pytest.approx(0.256 / 2)
    assert learning_rate_at(schedule, 19) == pytest.approx(0.256)
    assert learning_rate_at(schedule, 60) == pytest.approx(0.0256)


def test_resetting_optimizer_iterations_rewinds_the_learning_rate():
    model = recipe.compile_with_recipe(tiny_model(), epochs=4, steps_per_epoch=2)
    x = np.random.rand(8, 4).astype("float32")
    y = np.random.randint(0, 3, 8)
    model.fit(x, y, batch_size=4, epochs=4, verbose=0)
    optimizer = model.optimizer
    assert int(optimizer.iterations) == 8
    assert float(optimizer.learning_rate) == pytest.approx(0.001)
    # Rewind to the end of epoch 1 (step 2 of 8: before both decays).
    optimizer.iterations.assign(2)
    assert float(optimizer.learning_rate) == pytest.approx(0.1)
    optimizer.iterations.assign(5)
    assert float(optimizer.learning_rate) == pytest.approx(0.01)
    model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    assert int(optimizer.iterations) == 7


def test_optimizer_is_nesterov_sgd_with_paper_values():
    optimizer = recipe.paper_optimizer(epochs=10, steps_per_epoch=5)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.momentum == pytest.approx(0.9)
    assert optimizer.nesterov
    assert optimizer.coupled_weight_decay == pytest.approx(2e-4)
    assert optimizer.weight_decay is None  # no decoupled decay on top


def test_coupled_weight_decay_adds_to_the_gradient_before_momentum():
    """Same steps as PyTorch's SGD(weight_decay=wd): SGD on gradient + wd * w."""
    decay, rate = 0.01, 0.1
    coupled = recipe.CoupledWeightDecaySGD(
        learning_rate=rate, momentum=0.9, nesterov=True, coupled_weight_decay=decay
    )
    reference = keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True)
    weight = keras.Variable(np.array([1.0, -2.0, 3.0], np.float32))
    reference_weight = keras.Variable(weight.numpy())
    gradients = [np.array([0.5, 0.0, -1.0], np.float32), np.array([0.1, 0.2, 0.3], np.float32)]
    for gradient in gradients * 2:
        reference_gradient = gradient + decay * reference_weight.numpy()
        coupled.apply([gradient], [weight])
        reference.apply([reference_gradient], [reference_weight])
    np.testing.assert_allclose(weight.numpy(), reference_weight.numpy(), rtol=1e-6)


def test_coupled_weight_decay_shrinks_weights_without_gradient():
    optimizer = recipe.CoupledWeightDecaySGD(
        learning_rate=0.1, momentum=0.0, coupled_weight_decay=2e-4
    )
    weight = keras.Variable(np.ones(2, np.float32))
    optimizer.apply([np.zeros(2, np.float32)], [weight])
    np.testing.assert_allclose(weight.numpy(), 1 - 0.1 * 2e-4, rtol=1e-7)


def test_compiled_model_round_trips_schedule_and_optimizer(tmp_path):
    model = recipe.compile_with_recipe(
        tiny_model(), epochs=3, steps_per_epoch=4, learning_rate=0.05,
        weight_decay=1e-4,
    )
    model.fit(np.zeros((4, 4)), np.zeros(4), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    optimizer = loaded.optimizer
    assert isinstance(optimizer, recipe.CoupledWeightDecaySGD)
    assert optimizer.coupled_weight_decay == pytest.approx(1e-4)
    assert optimizer.get_config()["learning_rate"]["config"] == {
        "initial_learning_rate": 0.05, "boundaries": [6, 9], "decay": 0.1,
        "warmup_steps": 0,
    }
    assert int(optimizer.iterations) == 1


def test_compile_detects_logits_from_the_output_layer():
    with_softmax = recipe.compile_with_recipe(tiny_model(), 1, 1)
    with_logits = recipe.compile_with_recipe(tiny_model(activation=None), 1, 1)
    assert with_softmax.loss.get_config()["from_logits"] is False
    assert with_logits.loss.get_config()["from_logits"] is True
    forced = recipe.compile_with_recipe(tiny_model(activation=None), 1, 1, from_logits=False)
    assert forced.loss.get_config()["from_logits"] is False


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(epochs=0), "`epochs` must be an integer >= 1"),
        (dict(steps_per_epoch=2.5), "`steps_per_epoch` must be an integer >= 1"),
        (dict(boundaries=(0.75, 0.5)), "increasing fractions"),
        (dict(boundaries=(0.5, 1.0)), "increasing fractions"),
        (dict(learning_rate=-0.1), "`initial_learning_rate` must be a number > 0"),
        (dict(momentum=1.0), r"`momentum` must be a number in \[0, 1\)"),
        (dict(weight_decay=-1e-4), "`weight_decay` must be a number >= 0"),
        (dict(warmup_epochs=10), "warmup_epochs"),
    ],
)
def test_invalid_recipe_values_are_configuration_errors(kwargs, message):
    arguments = dict(epochs=10, steps_per_epoch=5)
    arguments.update(kwargs)
    with pytest.raises(ConfigurationError, match=message):
        recipe.paper_optimizer(**arguments)


def test_outputs_logits_looks_inside_masked_layers():
    import tf_asap as asap

    inputs = keras.Input((4,))
    probabilities = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(inputs))
    logits = keras.Model(inputs, keras.layers.Dense(3)(inputs))
    assert not recipe.outputs_logits(asap.make_prunable(probabilities))
    assert recipe.outputs_logits(asap.make_prunable(logits))
