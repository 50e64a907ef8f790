"""The calibration set of a run: chosen once (seeded), stored, re-used on resume."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tf_asap.errors import DataError, RunDirectoryError
from tf_asap.pruning.policies import ParamsTarget
from tf_asap.rounds.calibration import choose_calibration, pin_calibration
from tf_asap.rounds.controller import RoundController


@pytest.fixture
def model():
    inputs = keras.Input((4, 4, 1))
    outputs = keras.layers.Dense(2)(keras.layers.Flatten()(inputs))
    return keras.Model(inputs, outputs)


def samples(count, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(count, 4, 4, 1)).astype("float32"), rng.integers(0, 2, count)


def stacked(batches):
    return np.concatenate([np.asarray(batch) for batch in batches])


def test_a_seeded_choice_among_arrays_is_repeatable_and_not_the_first_rows(model):
    x, y = samples(50)
    first = choose_calibration((x, y), model, samples=10, seed=3)
    again = choose_calibration((x, y), model, samples=10, seed=3)
    other = choose_calibration((x, y), model, samples=10, seed=4)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    assert not np.array_equal(first, x[:10])
    # Every chosen row is a row of x, each at most once.
    rows = {row.tobytes() for row in x}
    assert {row.tobytes() for row in first} <= rows and len({r.tobytes() for r in first}) == 10


def test_without_a_count_every_sample_is_kept_in_order(model):
    x, _ = samples(12)
    np.testing.assert_array_equal(choose_calibration(x, model), x)


def test_a_shuffled_stream_is_pinned_so_a_resume_scores_the_same_samples(model, tmp_path):
    x, y = samples(64)
    stream = tf.data.Dataset.from_tensor_slices((x, y)).shuffle(64, seed=None).batch(8)
    path = tmp_path / "calibration.npz"
    chosen = stacked(pin_calibration(str(path), stream, model, samples=20))
    assert chosen.shape == (20, 4, 4, 1) and path.is_file()
    # Another pass over the stream would give other samples; the pinned set does not change.
    resumed = stacked(pin_calibration(str(path), stream, model, samples=20))
    np.testing.assert_array_equal(resumed, chosen)


def test_an_infinite_stream_without_a_sample_count_is_a_data_error(model):
    x, _ = samples(8)
    endless = tf.data.Dataset.from_tensor_slices(x).repeat()
    with pytest.raises(DataError, match="repeats forever.*dataset.take"):
        choose_calibration(endless, model)
    assert choose_calibration(endless, model, samples=20).shape == (20, 4, 4, 1)


def test_a_damaged_calibration_file_names_the_fix(model, tmp_path):
    path = tmp_path / "calibration.npz"
    path.write_bytes(b"not a zip")
    with pytest.raises(RunDirectoryError, match="Delete it to choose a new one"):
        pin_calibration(str(path), samples(4)[0], model)


def test_the_controller_pins_its_calibration_set_and_a_resume_reads_it_back(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((4, 4, 1))
    x = keras.layers.Conv2D(4, 3, activation="relu", name="conv")(inputs)
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(x)))
    x_train, y_train = samples(48)

    def controller(stream_seed):
        stream = tf.data.Dataset.from_tensor_slices(x_train).shuffle(48, seed=stream_seed).batch(8)
        return RoundController(
            model, ParamsTarget(reduction=0.3, max_rounds=1), (x_train, y_train),
            (x_train, y_train), run_dir=tmp_path, epochs=1, rewind_epoch=0,
            calibration_data=stream, optimizer=keras.optimizers.SGD(0.01), verbose=0,
        )

    first = controller(stream_seed=1)
    first.run()
    pinned = stacked(first.calibration)
    assert (tmp_path / "calibration.npz").is_file() and pinned.shape == (48, 4, 4, 1)
    # A resume with a stream in another order scores the stored samples, in their order.
    again = controller(stream_seed=2)
    again.run()
    np.testing.assert_array_equal(stacked(again.calibration), pinned)
