"""Adaptive pruning inside your own `model.fit`: the `AdaptivePruning` callback.

When you already have a training script, add one callback instead of
switching to the round controller. Every `epochs_per_round` epochs the
callback evaluates the model, asks the policy, and either prunes harder
(scoring filters by activation attention on `calibration_data`), rolls back
to the last acceptable round, or stops training with the best acceptable
round restored. Learning-rate rewinding (`rewind="lr"`, the default) puts the
optimizer, and with it the learning-rate schedule, back to where `fit`
started at the beginning of every round.

With `run_dir` the callback commits every round to a run directory (the
layout of `tf_asap.rounds.controller.RoundController`'s), so running the
script again after a crash continues the pruning instead of starting over;
without it, round states stay in memory.

Run from the repository root (about 2 minutes on 2 CPU cores):

    .venv/bin/python examples/fit_callback.py
"""

import math
import os

import keras

import tf_asap as asap
from tf_asap import data, recipe, zoo
from tf_asap.rounds.callback import AdaptivePruning
from tf_asap.rounds.training import split_validation
from tf_asap.pruning.policies import ParamsTarget


def main():
    keras.utils.set_random_seed(0)
    # The policy decides on a held-out part of the training images; the test
    # images are only reported.
    (x_train, y_train), (x_val, y_val) = split_validation(
        data.load_arrays("fashion_mnist", "train", limit=9_000), 2_000 / 9_000
    )
    x_test, y_test = data.load_arrays("fashion_mnist", "test", limit=2_000)

    steps_per_epoch = math.ceil(len(x_train) / 128)

    # A plain training script: build, compile, fit.
    model = zoo.build_model("vgg_small")
    recipe.compile_with_recipe(model, epochs=3, steps_per_epoch=steps_per_epoch, learning_rate=0.05)
    model.fit(x_train, y_train, batch_size=128, epochs=3, verbose=2)

    # Pruning: wrap the model with masks (weights are copied), compile it with
    # a schedule of `epochs_per_round` epochs that every round replays, and
    # fit with the callback. The run ends when the policy stops (here: 50% of
    # the parameters removed) or when `epochs` runs out.
    pm = asap.make_prunable(model)
    recipe.compile_with_recipe(pm, epochs=2, steps_per_epoch=steps_per_epoch, learning_rate=0.01)
    pruning = AdaptivePruning(
        ParamsTarget(reduction=0.5, max_rounds=8),
        calibration_data=x_train[:1_000],
        validation_data=(x_val, y_val),
        epochs_per_round=2,
        rewind="lr",
        test_data=(x_test, y_test),
        # Rounds are committed here: run the script again after a crash and
        # the pruning continues after the last completed round.
        run_dir=os.path.join("runs", "fit_callback"),
    )
    pm.fit(x_train, y_train, batch_size=128, epochs=40, callbacks=[pruning], verbose=0)

    # The model is left in the best acceptable round; the records are the
    # controller's round log, so tf_asap.rounds.report renders them the same way.
    from tf_asap import report

    print(report.rounds_table(pruning.records))
    cost = asap.count_cost(pm)
    print(
        f"best round {pruning.best_round}: params {cost.params:,} -> "
        f"{cost.effective_params:,} ({cost.params_reduction:.1%} removed)"
    )
    if pruning.test_metrics["final"] is not None:  # set when the policy stopped
        print(f"test accuracy {pruning.test_metrics['final']:.2%} "
              f"(before pruning {pruning.test_metrics['baseline']:.2%})")
    small = asap.slim(pm)  # a plain Keras model without the pruned filters
    os.makedirs("runs", exist_ok=True)
    small.save(os.path.join("runs", "fit_callback_slim.keras"))
    print(f"saved runs/fit_callback_slim.keras ({small.count_params():,} params)")


if __name__ == "__main__":
    main()
