"""Quickstart: mask, slim and measure a small CNN on Fashion-MNIST.

The smallest end-to-end use of the core API: train a small CNN briefly, wrap
it with masks, prune the filters with the smallest L1 norm in every group,
fine-tune, slim it physically, and check that the slim model computes what
the masked one computes.
"""

import gzip
import os

import keras
import numpy as np

import tf_asap as asap

DATA = os.environ.get("TF_ASAP_DATA_DIR", "/usr/share/datasets/fashion-mnist")


def read_idx(name):
    with gzip.open(os.path.join(DATA, name)) as f:
        raw = f.read()
    dims = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    x_train = read_idx("train-images-idx3-ubyte.gz")[:10000, ..., None] / 255.0
    y_train = read_idx("train-labels-idx1-ubyte.gz")[:10000]
    x_test = read_idx("t10k-images-idx3-ubyte.gz")[:2000, ..., None] / 255.0
    y_test = read_idx("t10k-labels-idx1-ubyte.gz")[:2000]

    model = keras.Sequential(
        [
            keras.Input((28, 28, 1)),
            keras.layers.Conv2D(16, 3, activation="relu", name="conv1"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", name="conv2"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(64, activation="relu", name="fc"),
            keras.layers.Dense(10, name="logits"),
        ]
    )
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    model.compile("adam", loss, metrics=["accuracy"])
    model.fit(x_train, y_train, epochs=2, batch_size=128, verbose=2)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)

    pm = asap.make_prunable(model)
    masks = {}
    for group in asap.channel_groups(pm):
        if not group.prunable:
            continue
        kernel = pm.get_layer(group.producers[0]).layer.kernel.numpy()
        norms = np.abs(kernel).reshape(-1, group.size).sum(axis=0)
        masks[group.name] = norms > np.quantile(norms, 0.5)
    asap.apply_masks(pm, masks)
    pm.compile("adam", loss, metrics=["accuracy"])
    pm.fit(x_train, y_train, epochs=1, batch_size=128, verbose=2)
    _, pruned_accuracy = pm.evaluate(x_test, y_test, verbose=0)

    small = asap.slim(pm)
    difference = np.abs(np.asarray(small(x_test[:256])) - np.asarray(pm(x_test[:256]))).max()
    cost = asap.count_cost(pm)
    print(cost.to_table())
    print(f"accuracy {accuracy:.4f} -> {pruned_accuracy:.4f}")
    print(f"params {cost.params:,} -> {cost.effective_params:,} ({cost.params_reduction:.1%} removed)")
    print(f"FLOPs {cost.flops:,} -> {cost.effective_flops:,} ({cost.flops_reduction:.1%} removed)")
    print(f"slim vs masked max abs difference: {difference:.2e}")


if __name__ == "__main__":
    main()
