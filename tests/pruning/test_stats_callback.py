import keras
import numpy as np
import pytest

import tf_asap
from tf_asap.pruning.stats_callback import ActivationStatsCallback
from tf_asap.errors import ConfigurationError
from tf_asap.pruning.stats import collect_activation_stats

layers = keras.layers


def compiled_model():
    inputs = keras.Input((6, 6, 1))
    x = layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    outputs = layers.Dense(2, name="out")(layers.Flatten()(x))
    model = tf_asap.make_prunable(keras.Model(inputs, outputs))
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return model


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    return rng.normal(size=(16, 6, 6, 1)).astype("float32"), rng.normal(size=(16, 2)).astype("float32")


def test_statistics_are_refreshed_during_fit_and_follow_the_weights(data):
    x, y = data
    model = compiled_model()
    callback = ActivationStatsCallback((x, y), apoz=True)
    model.fit(x, y, epochs=3, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(callback.history) == [0, 1, 2]
    # The latest statistics are those of the trained weights...
    np.testing.assert_allclose(callback.attention["conv"], collect_activation_stats(model, x)["conv"], rtol=1e-5)
    assert callback.statistics.apoz is not None and callback.statistics.num_samples == 16
    # ...and they moved while training (SGD with a large step changes the conv).
    assert not np.allclose(callback.history[0]["conv"], callback.history[2]["conv"])


@pytest.mark.parametrize("epochs, expected", [(2, [1, 3]), ([0, 3], [0, 3]), (None, [0, 1, 2, 3])])
def test_refresh_schedule(data, epochs, expected):
    x, y = data
    model = compiled_model()
    callback = ActivationStatsCallback(x, epochs=epochs, max_samples=4)
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, callbacks=[callback])
    assert sorted(callback.history) == expected


def test_attention_is_none_before_the_first_refresh(data):
    assert ActivationStatsCallback(data[0]).attention is None


@pytest.mark.parametrize("options", [{"epochs": 0}, {"epochs": [-1]}, {"epochs": "every"}, {"mapping": "mode"}])
def test_bad_options_are_configuration_errors(data, options):
    with pytest.raises(ConfigurationError):
        ActivationStatsCallback(data[0], **options)


@pytest.mark.parametrize("epochs", [0, -2, 1.5, "2", True, [1, -1], [0, 2.5]])
def test_bad_epochs_are_refused_saying_what_is_accepted(epochs):
    with pytest.raises(ConfigurationError, match="`epochs") as error:
        ActivationStatsCallback(np.zeros((1, 6, 6, 1)), epochs=epochs)
    assert "0-based epoch indices" in str(error.value)


def test_epochs_given_as_a_list_become_a_set_of_indices():
    callback = ActivationStatsCallback(np.zeros((1, 6, 6, 1)), epochs=range(0, 6, 2))
    assert callback.epochs == frozenset({0, 2, 4})
    assert [callback.refreshes_at(epoch) for epoch in range(4)] == [True, False, True, False]


@pytest.mark.parametrize("options, name", [({"power": 0}, "power"), ({"power": "2"}, "power"),
                                           ({"mapping": "median"}, "mapping"), ({"apoz": "yes"}, "apoz")])
def test_bad_attention_options_are_refused_naming_them(options, name):
    with pytest.raises(ConfigurationError, match=f"`{name}`"):
        ActivationStatsCallback(np.zeros((1, 6, 6, 1)), **options)
