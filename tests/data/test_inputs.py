import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, DataError
from tf_asap.inputs import as_arrays, as_batches


@pytest.fixture(scope="module")
def model():
    inputs = keras.Input((4, 4, 1))
    return keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))


@pytest.fixture
def x():
    return np.arange(10 * 16, dtype="float32").reshape(10, 4, 4, 1)


@pytest.fixture
def y():
    return np.arange(10)


def batch_sizes(dataset):
    return [int(batch.shape[0]) for batch in dataset]


def gathered(dataset):
    return np.concatenate([np.asarray(batch) for batch in dataset])


def test_array_x_is_batched(model, x):
    dataset = as_batches(x, model, batch_size=4)
    assert batch_sizes(dataset) == [4, 4, 2]
    np.testing.assert_array_equal(gathered(dataset), x)


def test_array_tuple_drops_labels(model, x, y):
    dataset = as_batches((x, y), model, batch_size=3)
    np.testing.assert_array_equal(gathered(dataset), x)


def test_array_with_sample_weights_drops_labels_and_weights(model, x, y):
    np.testing.assert_array_equal(gathered(as_batches([x, y, y * 0.5], model)), x)


def test_keep_labels_keeps_x_and_y(model, x, y):
    batches = list(as_batches((x, y), model, batch_size=4, keep_labels=True))
    np.testing.assert_array_equal(np.concatenate([b[1] for b in batches]), y)


def test_arrays_default_to_batches_of_128(model):
    assert batch_sizes(as_batches(np.zeros((300, 4, 4, 1), "float32"), model)) == [128, 128, 44]


def test_unbatched_dataset_is_batched(model, x, y):
    dataset = as_batches(tf.data.Dataset.from_tensor_slices((x, y)), model, batch_size=4)
    assert batch_sizes(dataset) == [4, 4, 2]
    np.testing.assert_array_equal(gathered(dataset), x)


def test_batched_dataset_keeps_its_batches(model, x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    assert batch_sizes(as_batches(dataset, model)) == [3, 3, 3, 1]


def test_batched_dataset_is_rebatched_when_asked(model, x):
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3)
    assert batch_sizes(as_batches(dataset, model, batch_size=5)) == [5, 5]


def test_batched_dataset_without_model_is_recognised_by_its_none_dimension(x):
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(3)
    assert batch_sizes(as_batches(dataset)) == [3, 3, 3, 1]


def test_limit_cuts_the_last_batch(model, x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(4)
    limited = as_batches(dataset, model, limit=6)
    assert batch_sizes(limited) == [4, 2]
    np.testing.assert_array_equal(gathered(limited), x[:6])


def test_limit_on_arrays(model, x):
    assert batch_sizes(as_batches(x, model, batch_size=4, limit=5)) == [4, 1]


def test_limit_larger_than_data_keeps_everything(model, x):
    assert batch_sizes(as_batches(x, model, batch_size=4, limit=1000)) == [4, 4, 2]


def test_generator_of_batches(model, x, y):
    def batches():
        for start in range(0, 10, 3):
            yield x[start : start + 3], y[start : start + 3]

    dataset = as_batches(batches(), model)
    np.testing.assert_array_equal(gathered(dataset), x)


def test_function_returning_generator_of_single_samples_is_reusable(model, x, y):
    dataset = as_batches(lambda: ((x[i], y[i]) for i in range(10)), model, batch_size=4)
    assert batch_sizes(dataset) == [4, 4, 2]
    np.testing.assert_array_equal(gathered(dataset), x)  # a second pass works


def test_pydataset(model, x, y):
    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 2

        def __getitem__(self, index):
            return x[index * 5 : index * 5 + 5], y[index * 5 : index * 5 + 5]

    np.testing.assert_array_equal(gathered(as_batches(Batches(), model)), x)


def test_multi_input_flat_tuple_is_x():
    first, second = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([first, second], keras.layers.Concatenate()([first, second]))
    a, b = np.ones((6, 3), "float32"), np.zeros((6, 2), "float32")
    batch = next(iter(as_batches((a, b), model, batch_size=6)))
    assert [tuple(part.shape) for part in batch] == [(6, 3), (6, 2)]
    batch = next(iter(as_batches(((a, b), np.arange(6)), model, batch_size=6)))
    assert [tuple(part.shape) for part in batch] == [(6, 3), (6, 2)]


def test_wrong_rank_is_a_data_error(model):
    with pytest.raises(DataError, match="rank"):
        as_batches(np.zeros((10, 4, 4), "float32"), model)


def test_arrays_of_different_lengths_are_a_data_error(model, x):
    with pytest.raises(DataError, match="same first"):
        as_batches((x, np.arange(3)), model)


def test_unknown_kind_is_a_data_error(model):
    with pytest.raises(DataError, match="Cannot use"):
        as_batches(42, model)


@pytest.mark.parametrize("value", [0, -1, 2.5, True])
def test_bad_limit_is_a_configuration_error(model, x, value):
    with pytest.raises(ConfigurationError, match="limit"):
        as_batches(x, model, limit=value)


def test_wrong_non_batch_dimension_is_a_data_error_naming_both_shapes(model):
    with pytest.raises(DataError, match=r"\(10, 4, 4, 3\).*\(None, 4, 4, 1\).*x\[\.\.\., None\]"):
        as_batches(np.zeros((10, 4, 4, 3), "float32"), model)


def test_dataset_of_the_wrong_sample_shape_is_a_data_error(model):
    dataset = tf.data.Dataset.from_tensor_slices(np.zeros((6, 5, 5, 1), "float32"))
    with pytest.raises(DataError, match=r"\(5, 5, 1\).*\(4, 4, 1\)"):
        as_batches(dataset, model)


def test_limit_advances_a_generator_of_samples_only_limit_times(model, x):
    drawn = []

    def samples():
        while True:
            drawn.append(1)
            yield x[0]

    dataset = as_batches(samples(), model, batch_size=4, limit=6)
    assert batch_sizes(dataset) == [4, 2]
    assert len(drawn) == 6


def test_as_arrays_gathers_x_and_y_from_a_batched_dataset(model, x, y):
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(3)
    features, labels = as_arrays(dataset, model)
    np.testing.assert_array_equal(features, x)
    np.testing.assert_array_equal(labels, y)


def test_as_arrays_keeps_labels_of_arrays_and_cuts_at_the_limit(model, x, y):
    features, labels = as_arrays((x, y, y * 0.5), model, limit=4)
    np.testing.assert_array_equal(features, x[:4])
    np.testing.assert_array_equal(labels, y[:4])


def test_as_arrays_without_labels_returns_none_for_y(model, x):
    features, labels = as_arrays(lambda: iter(x), model)
    np.testing.assert_array_equal(features, x)
    assert labels is None


def test_as_arrays_reads_a_flat_multi_input_tuple_as_x_without_labels():
    first, second = keras.Input((3,)), keras.Input((2,))
    model = keras.Model([first, second], keras.layers.Concatenate()([first, second]))
    a, b = np.ones((5, 3), "float32"), np.zeros((5, 2), "float32")
    features, labels = as_arrays((a, b), model)
    assert [part.shape for part in features] == [(5, 3), (5, 2)]
    assert labels is None
    features, labels = as_arrays(((a, b), np.arange(5)), model)
    np.testing.assert_array_equal(labels, np.arange(5))


def test_as_arrays_of_no_samples_is_a_data_error(model):
    with pytest.raises(DataError, match="no samples"):
        as_arrays(tf.data.Dataset.from_tensor_slices(np.zeros((0, 4, 4, 1), "float32")), model)


def test_dict_keyed_by_input_names_is_checked_in_the_model_input_order():
    image, extra = keras.Input((4, 4, 1), name="image"), keras.Input((2,), name="extra")
    pooled = keras.layers.Flatten()(image)
    model = keras.Model([image, extra], keras.layers.Concatenate()([pooled, extra]))
    data = {"image": np.zeros((5, 4, 4, 1), "float32"), "extra": np.zeros((5, 2), "float32")}
    batch = next(iter(as_batches(data, model)))
    assert tuple(batch["image"].shape) == (5, 4, 4, 1)
    with pytest.raises(DataError, match=r"\(5, 3\)"):
        as_batches({**data, "extra": np.zeros((5, 3), "float32")}, model)
