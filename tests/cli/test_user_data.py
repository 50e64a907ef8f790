"""The command line on the user's own data: an image folder, an .npz file, tfds:NAME.

Each flow trains a tiny model with `tf-asap train`, prunes it to a params
target and exports it, through subprocesses as a user runs them.
"""

import json
import re

import numpy as np
import pytest
import tensorflow as tf

from tests.cli.runner import run_cli, user_lines

CLASSES = 10


def class_images(count, seed, size=28):
    """Grayscale uint8 images whose class is where a bright square sits."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % CLASSES
    images = rng.integers(0, 60, (count, size, size, 1), dtype=np.uint8)
    for image, label in zip(images, labels):
        row, column = divmod(int(label), 5)
        image[4 + 10 * row: 12 + 10 * row, 1 + 5 * column: 5 + 5 * column] = 255
    return images, labels


def write_folder(root, count, seed):
    images, labels = class_images(count, seed)
    for index, (image, label) in enumerate(zip(images, labels)):
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}.png").write_bytes(tf.io.encode_png(image).numpy())
    return root


def train_prune_export(tmp_path, data_flags, test_flags):
    """Runs the three commands; returns their CompletedProcesses."""
    base, run_dir, out = tmp_path / "base", tmp_path / "run", tmp_path / "out"
    trained = run_cli(
        "train", *data_flags, *test_flags, "--model", "vgg_small", "--epochs", "2",
        "--batch-size", "32", "--output", base, "--verbose", "0",
    )
    assert trained.returncode == 0, trained.stderr
    pruned = run_cli(
        "prune", base, *data_flags, "--params-reduction", "30%", "--run-dir", run_dir,
        "--max-rounds", "4", "--calibration-samples", "64", "--verbose", "0",
    )
    assert pruned.returncode == 0, pruned.stderr
    exported = run_cli(
        "export", run_dir, *test_flags, "--output", out, "--format", "tflite",
        "--quantization", "int8", "--evaluate", "--calibration-samples", "32", "--name", "mine",
    )
    assert exported.returncode == 0, exported.stderr
    for result in (trained, pruned, exported):
        assert user_lines(result.stderr) == []
    return trained, pruned, exported


def check_flow(tmp_path, trained, pruned, exported):
    assert "pixels scaled to [0, 1] (the model has no Rescaling layer)" in trained.stdout
    assert "Validation: 10% of the training data, held out with seed 0." in trained.stdout
    settings = json.loads((tmp_path / "base" / "train.json").read_text())
    assert 0.0 <= settings["test_accuracy"] <= 1.0
    assert "Decisions use the validation data: 10% of the training data" in pruned.stdout
    reduction = float(re.search(r"params -(\d+\.\d)%", pruned.stdout).group(1))
    assert reduction >= 27.0  # the 30% target, within the policy's 3% tolerance
    assert "Test accuracy (not used by any decision)" in pruned.stdout
    assert (tmp_path / "run" / "final" / "slim.keras").is_file()
    assert (tmp_path / "out" / "mine_int8.tflite").is_file()
    assert re.search(r"mine_int8\.tflite\s+TFLite int8\s+[\d.]+ kB\s+\d+\.\d\d%", exported.stdout)


def test_image_folder_trains_prunes_and_exports(tmp_path):
    train_dir = write_folder(tmp_path / "pics", 300, seed=0)
    test_dir = write_folder(tmp_path / "pics_test", 100, seed=1)
    results = train_prune_export(
        tmp_path, ["--data", train_dir], ["--test-data", test_dir]
    )
    check_flow(tmp_path, *results)


def test_npz_file_trains_prunes_and_exports(tmp_path):
    x_train, y_train = class_images(300, seed=0)
    x_test, y_test = class_images(100, seed=1)
    path = tmp_path / "arrays.npz"
    np.savez(path, x_train=x_train[..., 0], y_train=y_train, x_test=x_test, y_test=y_test)
    results = train_prune_export(tmp_path, ["--data", path], [])
    check_flow(tmp_path, *results)


def rescaling_model_file(path):
    """A tiny classifier of 28x28 grayscale images that rescales its own input."""
    import keras

    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, keras.layers.Dense(CLASSES, activation="softmax")(x))
    model.compile("sgd", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.save(path)
    return path


def test_a_model_with_rescaling_gets_raw_pixels_and_rgb_images_are_converted(tmp_path):
    model = rescaling_model_file(tmp_path / "model.keras")
    images, labels = class_images(60, seed=0)
    np.savez(tmp_path / "rgb.npz", x_train=np.repeat(images, 3, axis=-1), y_train=labels)
    result = run_cli(
        "prune", model, "--data", tmp_path / "rgb.npz", "--rewind", "lr",
        "--epochs", "1", "--params-reduction", "20%", "--max-rounds", "1",
        "--run-dir", tmp_path / "run", "--calibration-samples", "16", "--verbose", "0",
    )
    assert result.returncode == 0, result.stderr
    assert "raw pixel values (the model starts with Rescaling)" in result.stdout
    assert "converted 3-channel images to 1 channel(s)" in result.stdout


def one_error_line(result):
    assert result.returncode == 1, result.stdout + result.stderr
    lines = user_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_an_empty_folder_fails_with_one_line_naming_it(tmp_path):
    root = tmp_path / "pics"
    root.mkdir()
    line = one_error_line(run_cli(
        "train", "--data", root, "--epochs", "1", "--output", tmp_path / "base", "--verbose", "0",
    ))
    assert f"'{root}' holds no images in class sub-folders" in line


def test_labels_outside_the_models_classes_fail_with_one_line(tmp_path):
    model = rescaling_model_file(tmp_path / "model.keras")
    images, labels = class_images(20, seed=0)
    labels[3] = CLASSES + 1
    np.savez(tmp_path / "bad.npz", x_train=images, y_train=labels)
    line = one_error_line(run_cli(
        "prune", model, "--data", tmp_path / "bad.npz", "--rewind", "lr", "--epochs", "1",
        "--params-reduction", "20%", "--run-dir", tmp_path / "run",
    ))
    assert f"label {CLASSES + 1} is outside the model's {CLASSES} classes" in line
    assert "bad.npz" in line
