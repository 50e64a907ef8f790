"""The command line's data handling: `--data` kinds, held-out validation, test only reported."""

import numpy as np
import pytest

from tf_asap.cli import datasets
from tf_asap.cli.flags import UsageError


def tiny_classifier(shape=(28, 28, 1), classes=10):
    import keras

    inputs = keras.Input(shape)
    x = keras.layers.Conv2D(4, 3, activation="relu")(inputs)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(classes, activation="softmax")(x))


SETTINGS = {"validation_split": 0.25, "seed": 0, "batch_size": 8, "calibration_samples": 4}


def count(dataset):
    return sum(int(labels.shape[0]) for _, labels in dataset)


def test_tfds_name_loads_its_train_validation_and_test_splits():
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=16):
        data = datasets.load_for_model(tiny_classifier(), "tfds:mnist", dict(SETTINGS))
    assert data.description == "tfds:mnist"
    # Mock data has every split; real mnist has no validation split and holds one out.
    assert count(data.train) == 16 and count(data.validation) == 16
    assert data.validation_label == "the data's own validation split"
    x_test, y_test = data.test
    assert x_test.shape == (16, 28, 28, 1) and x_test.dtype == np.float32
    assert 0.0 <= x_test.min() and x_test.max() <= 1.0  # uint8 pixels scaled to [0, 1]
    assert data.calibration[0].shape == (4, 28, 28, 1)


def test_npz_validation_split_is_used_as_given(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (10, 28, 28, 1), dtype=np.uint8)
    y = np.arange(10) % 10
    np.savez(tmp_path / "d.npz", x_train=x, y_train=y, x_val=x[:3], y_val=y[:3])
    data = datasets.load_for_model(tiny_classifier(), str(tmp_path / "d.npz"), dict(SETTINGS))
    assert count(data.train) == 10 and count(data.validation) == 3
    assert data.validation_label == "the data's own validation split"
    assert data.test is None


@pytest.mark.parametrize(
    "spec, message",
    [("no_such_set", "not a folder, a .npz file or a known data set"),
     ("missing.npz", "the file 'missing.npz' does not exist"),
     ("tfds:", "needs a name")],
)
def test_unknown_data_is_a_usage_error_with_the_fix(spec, message):
    with pytest.raises(UsageError, match=message):
        datasets.kind_of(spec)
