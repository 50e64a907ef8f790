"""Fixtures shared by the export tests: a CNN trained once on Fashion-MNIST and its exports."""

import os

import keras
import numpy as np
import pytest

from tf_asap.export import convert_tflite, export_micro
from tests.export.models import FASHION_MNIST_DIR, read_idx


@pytest.fixture(scope="session")
def fashion_mnist():
    """4000 training and 1000 test images of Fashion-MNIST, in [0, 1]."""
    if not os.path.isdir(FASHION_MNIST_DIR):
        pytest.skip(f"Fashion-MNIST not found in {FASHION_MNIST_DIR}")
    x_train = read_idx("train-images-idx3-ubyte.gz")[:4000]
    y_train = read_idx("train-labels-idx1-ubyte.gz")[:4000]
    x_test = read_idx("t10k-images-idx3-ubyte.gz")[:1000]
    y_test = read_idx("t10k-labels-idx1-ubyte.gz")[:1000]
    scale = np.float32(1 / 255)
    return (
        (x_train[..., None] * scale, y_train.astype(np.int64)),
        (x_test[..., None] * scale, y_test.astype(np.int64)),
    )


@pytest.fixture(scope="session")
def trained_cnn(fashion_mnist):
    """A small CNN trained for 2 epochs on 4000 Fashion-MNIST images."""
    keras.utils.set_random_seed(0)
    (x_train, y_train), _ = fashion_mnist
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU()(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(10)(x)
    model = keras.Model(inputs, outputs, name="fashion_cnn")
    model.compile(
        optimizer=keras.optimizers.Adam(3e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    model.fit(x_train, y_train, batch_size=64, epochs=2, verbose=0)
    return model


@pytest.fixture(scope="session")
def cnn_int8(trained_cnn, fashion_mnist):
    (x_train, _), _ = fashion_mnist
    return convert_tflite(trained_cnn, "int8", representative_data=x_train)


@pytest.fixture(scope="session")
def micro_bundle(trained_cnn, fashion_mnist, tmp_path_factory):
    (x_train, _), (x_test, y_test) = fashion_mnist
    out_dir = tmp_path_factory.mktemp("micro")
    return export_micro(
        trained_cnn,
        out_dir,
        "fashion_cnn",
        representative_data=x_train,
        evaluation_data=(x_test[:300], y_test[:300]),
    )
