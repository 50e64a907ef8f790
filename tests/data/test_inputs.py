import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, DataError
from tf_asap.inputs import as_batches


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
