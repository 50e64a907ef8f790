"""Tests of tf_asap.rounds.training: the held-out validation split and the epoch checks."""

import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import ConfigurationError, DataError
from tf_asap.rounds.training import check_epochs, split_validation


def test_array_split_is_disjoint_complete_and_seeded():
    x = np.arange(100, dtype="float32").reshape(100, 1)
    y = np.arange(100)
    (x_train, y_train), (x_val, y_val) = split_validation((x, y), 0.2, seed=3)
    assert len(x_val) == 20 and len(x_train) == 80
    assert set(y_train).isdisjoint(set(y_val))
    assert sorted(np.concatenate([y_train, y_val])) == list(range(100))
    np.testing.assert_array_equal(x_val[:, 0], y_val)  # rows stay paired
    again = split_validation((x, y), 0.2, seed=3)[1][1]
    other = split_validation((x, y), 0.2, seed=4)[1][1]
    np.testing.assert_array_equal(again, y_val)
    assert not np.array_equal(other, y_val)
    # Not simply the last 20%: the permutation spreads the validation samples.
    assert y_val.max() - y_val.min() > 20


def test_dataset_split_takes_and_skips_a_fixed_number_of_elements():
    dataset = tf.data.Dataset.range(50).batch(5)  # 10 batches
    train, validation = split_validation(dataset, 0.2)
    validation_values = [int(v) for batch in validation for v in batch]
    train_values = [int(v) for batch in train for v in batch]
    assert validation_values == list(range(10))
    assert train_values == list(range(10, 50))


def test_dataset_of_unknown_size_cannot_be_split():
    dataset = tf.data.Dataset.range(50).filter(lambda v: v % 2 == 0)
    with pytest.raises(DataError, match="unknown size.*validation_data"):
        split_validation(dataset, 0.1)
    with pytest.raises(DataError, match="infinite"):
        split_validation(tf.data.Dataset.range(5).repeat(), 0.1)


def test_split_that_leaves_nothing_or_is_not_a_fraction_is_refused():
    data = (np.zeros((5, 1)), np.zeros(5))
    with pytest.raises(DataError, match="leaves no validation data"):
        split_validation(data, 0.01)
    with pytest.raises(ConfigurationError, match="validation_split"):
        split_validation(data, 1.0)
    with pytest.raises(ConfigurationError, match="not percentages"):
        split_validation(data, 10)
    with pytest.raises(DataError, match="only arrays and tf.data.Dataset"):
        split_validation(iter([]), 0.1)


def test_epochs_and_rewind_epoch_are_checked_with_a_fix():
    assert check_epochs(10, None) == (10, 6)
    with pytest.raises(ConfigurationError, match="`rewind_epoch` must be an integer in \\[0, 9\\]"):
        check_epochs(10, 10)
    with pytest.raises(ConfigurationError, match="`epochs` must be an integer >= 1.*Algorithm 1"):
        check_epochs(True, None)
