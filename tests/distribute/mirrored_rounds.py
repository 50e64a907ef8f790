"""Pruning on two logical CPU devices under `MirroredStrategy` against one device (run as a script).

Usage: python -m tests.distribute.mirrored_rounds RUN_ROOT

The logical devices must be configured before TensorFlow touches them, so
this runs in its own process. It runs the same seeded 2-round
`RoundController` and `AdaptivePruning` prunes on one device and under the
strategy, and prints one line `RESULT {json}` with what the test compares.
"""

import contextlib
import json
import os
import sys

os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"

import tensorflow as tf  # noqa: E402

_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402
from tf_asap.core.masks import mask_digest  # noqa: E402
from tf_asap.errors import ConfigurationError  # noqa: E402

ROOT = sys.argv[1]
RNG = np.random.default_rng(0)
X = RNG.normal(size=(96, 8, 8, 1)).astype("float32")
Y = (X.mean(axis=(1, 2, 3)) > 0).astype("int64") + (X[:, :4].mean(axis=(1, 2, 3)) > 0)
X_VAL, Y_VAL = X[:32], Y[:32]


def tiny():
    """Convolutions without BatchNormalization: replicas keep no local statistics."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu", name="conv2")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(3, name="head")(x), name="tiny")


def controller_run(name, **kwargs):
    controller = asap.RoundController(
        kwargs.pop("model", None) or tiny(), asap.ParamsTarget(reduction=0.4, step=0.5, max_rounds=2),
        (X, Y), (X_VAL, Y_VAL), run_dir=os.path.join(ROOT, name), epochs=2, rewind_epoch=1,
        batch_size=16, optimizer=keras.optimizers.SGD(0.05), verbose=0, **kwargs,
    )
    return controller, controller.run()


def callback_run(model, scope):
    """Compiles in `scope`; creates the callback and fits outside any scope."""
    with scope:
        model.compile(keras.optimizers.SGD(0.05),
                      keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    pruning = asap.AdaptivePruning(
        asap.ParamsTarget(reduction=0.4, step=0.5, max_rounds=2), X[:48], (X_VAL, Y_VAL),
        epochs_per_round=1, verbose=0,
    )
    model.fit(X, Y, batch_size=16, epochs=4, shuffle=False, callbacks=[pruning], verbose=0)
    return pruning


def replicas_agree(strategy, model):
    """Whether every mask variable holds the same values on every replica."""
    for layer in model.layers:
        if isinstance(layer, asap.MaskedLayer):
            for mask in (layer.filter_mask, layer.input_mask):
                copies = [np.asarray(v) for v in strategy.experimental_local_results(mask.value)]
                if len(copies) != 2 or any(not np.array_equal(copies[0], c) for c in copies[1:]):
                    return False
    return True


def decisions(result):
    return [
        (r["round"], r["threshold"], r.get("pruned_channels"), r.get("mask_digest"))
        for r in result.rounds
    ]


def main():
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    report = {"replicas": strategy.num_replicas_in_sync}

    # Statistics: the same weights on one device and on two replicas.
    single = asap.make_prunable(tiny())
    with strategy.scope():
        mirrored = asap.make_prunable(tiny())
    mirrored.set_weights(single.get_weights())
    one = asap.collect_activation_stats(single, X, batch_size=10)
    two = asap.collect_activation_stats(mirrored, X, batch_size=10)
    report["stats_difference"] = max(float(np.max(np.abs(one[k] - two[k]))) for k in one)

    # The controller: created inside the scope, run outside it.
    _, alone = controller_run("single")
    with strategy.scope():
        controller = asap.RoundController(
            tiny(), asap.ParamsTarget(reduction=0.4, step=0.5, max_rounds=2), (X, Y), (X_VAL, Y_VAL),
            run_dir=os.path.join(ROOT, "mirrored"), epochs=2, rewind_epoch=1, batch_size=16,
            optimizer=keras.optimizers.SGD(0.05), verbose=0,
        )
    together = controller.run()
    report["controller_strategy"] = controller.strategy is strategy
    report["same_decisions"] = decisions(alone) == decisions(together)
    report["accuracy_difference"] = max(
        abs(a["accuracy"] - b["accuracy"]) for a, b in zip(alone.rounds, together.rounds)
    )
    report["rounds"] = len(together.rounds)
    report["controller_replicas_agree"] = replicas_agree(strategy, together.model)
    report["slim_on_strategy"] = all(
        strategy.extended.variable_created_in_scope(v.value) for v in together.slim_model.weights
    )
    report["optimizer_on_strategy"] = all(
        strategy.extended.variable_created_in_scope(v.value) for v in together.model.optimizer.variables
    )

    # The fit callback.
    alone_callback = callback_run(asap.make_prunable(tiny()), contextlib.nullcontext())
    with strategy.scope():
        model = asap.make_prunable(tiny())
    together_callback = callback_run(model, strategy.scope())
    report["callback_strategy"] = together_callback.strategy is strategy
    report["callback_rounds"] = len(together_callback.records)
    report["callback_replicas_agree"] = replicas_agree(strategy, model)
    report["callback_same_masks"] = [r.get("mask_digest") for r in alone_callback.records] == [
        r.get("mask_digest") for r in together_callback.records
    ]

    # A model built outside the strategy's scope is refused.
    try:
        controller_run("outside", model=asap.make_prunable(tiny()), strategy=strategy)
        report["outside_refused"] = ""
    except ConfigurationError as error:
        report["outside_refused"] = str(error)
    report["final_digest_matches"] = mask_digest(together.model) == mask_digest(alone.model)
    print("RESULT " + json.dumps(report), flush=True)


if __name__ == "__main__":
    main()
