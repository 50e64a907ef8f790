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


def test_train_data_shape_reads_a_folder_once_and_reuses_it(tmp_path):
    from tests.data.test_data import write_image_folder

    root = write_image_folder(tmp_path / "pics", classes=3, per_class=4, size=(12, 10), channels=3)
    shape, classes, loaded = datasets.data_shape(str(root), image_size=(8, 8))
    assert shape == (8, 8, 3) and classes == 3
    data = datasets.load_for_model(
        tiny_classifier(shape, classes), str(root), dict(SETTINGS), loaded=loaded
    )
    assert count(data.train) == 9 and count(data.validation) == 3
    assert data.notes == ["pixels scaled to [0, 1] (the model has no Rescaling layer)"]


def test_a_streamed_named_set_holds_out_the_end_of_its_training_split():
    tfds = pytest.importorskip("tensorflow_datasets")
    settings = dict(SETTINGS, calibration_samples=2, test_limit=3)
    with tfds.testing.mock_data(num_examples=8):
        data = datasets.load_for_model(tiny_classifier((224, 224, 3)), "imagenette", settings)
        # Mock data ignores tfds slicing: the sizes are not checked, only that both load.
        assert count(data.train) > 0 and count(data.validation) > 0
    assert data.validation_label == "the last 25% of the training split (a streamed set: sliced, not shuffled)"
    assert data.test[0].shape == (3, 224, 224, 3)
    assert data.calibration[0].shape == (2, 224, 224, 3)
