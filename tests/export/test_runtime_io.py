"""Tests for tf_asap.export.runtime_io: quantization, chunking, accuracy, evaluation data."""

import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import DataError
from tf_asap.export.flatbuffer import TensorInfo
from tf_asap.export.runtime_io import dequantize, evaluation_arrays, quantize, run_in_chunks, top1_accuracy
from tests.export.models import random_images, residual_model, two_input_model

INT8 = TensorInfo("input_0", 0, "int8", (1, 2), scale=0.5, zero_point=-3)


def test_quantize_then_dequantize_round_trips_within_half_a_step():
    values = np.array([[-10.0, 0.3], [1.2, 20.0]], np.float32)

    restored = dequantize(quantize(values, INT8), INT8)

    np.testing.assert_allclose(restored, values, atol=0.25)


def test_quantize_saturates_at_the_int8_limits():
    assert quantize(np.array([[1e6, -1e6]], np.float32), INT8).tolist() == [[127, -128]]


def test_run_in_chunks_pads_the_last_chunk_and_drops_its_outputs():
    info = TensorInfo("input_0", 0, "float32", (4, 2), 0.0, 0)
    seen = []

    def run_chunk(parts):
        seen.append(parts[0].shape[0])
        return [parts[0].sum(axis=1)]

    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    (sums,) = run_in_chunks([x], [info], 4, run_chunk)

    assert seen == [4, 4, 4]
    np.testing.assert_array_equal(sums, x.sum(axis=1))


def test_top1_accuracy_reads_integer_and_one_hot_labels():
    scores = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])

    assert top1_accuracy(scores, np.array([1, 0, 0])) == pytest.approx(2 / 3)
    assert top1_accuracy(scores, np.eye(2)[[1, 0, 1]]) == 1.0


def test_top1_accuracy_refuses_labels_of_another_length():
    with pytest.raises(DataError, match="3 samples were run but 2 labels"):
        top1_accuracy(np.zeros((3, 2)), np.array([0, 1]))


def test_evaluation_arrays_read_a_dataset_of_x_y_for_each_input():
    model = two_input_model()
    images, extra = random_images(7, (8, 8, 3)), np.ones((7, 4), np.float32)
    labels = np.arange(7) % 3
    dataset = tf.data.Dataset.from_tensor_slices(((images, extra), labels)).batch(3)

    x, y = evaluation_arrays(dataset, model)

    np.testing.assert_array_equal(x[0], images)
    np.testing.assert_array_equal(x[1], extra)
    np.testing.assert_array_equal(y, labels)


def test_evaluation_data_without_labels_names_the_fix():
    with pytest.raises(DataError, match="`evaluation_data` holds inputs but no labels.*\\(x, y\\)"):
        evaluation_arrays(random_images(4), residual_model(width=4))


def test_evaluation_data_of_the_wrong_shape_names_the_argument_and_model():
    model = residual_model(width=4)
    with pytest.raises(DataError, match="`evaluation_data` does not fit model 'tiny_resnet'"):
        evaluation_arrays((random_images(4, (8, 8, 3)), np.zeros(4)), model)
