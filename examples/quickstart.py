"""Quickstart: train, prune adaptively, slim and export with the Python API.

The whole pipeline in one page, on Fashion-MNIST (about 3 minutes on 2 CPU
cores; every size here is kept small on purpose):

1. train a small VGG with the paper's recipe, keeping the rewind checkpoint
   (`train_baseline`);
2. prune it round by round under a 1-point accuracy budget
   (`RoundController` + `AccuracyGuaranteed`): activation attention scores the
   filters, layer-aware thresholds mask them, weights are rewound and
   retrained, the policy raises the threshold or rolls back;
3. look at the result: per-layer params and FLOPs (`count_cost`) of the
   masked model, and the slim model that physically lacks the pruned filters;
4. export the slim model to int8 TFLite and check its accuracy in LiteRT.

Run from the repository root:

    .venv/bin/python examples/quickstart.py

The run directory `runs/quickstart` makes the script resumable: run it
again after Ctrl-C and it carries on after the last completed round (delete
the directory to start over).
"""

import os

import numpy as np

import tf_asap as asap
from tf_asap import data, export, zoo
from tf_asap.rounds.controller import RoundController, train_baseline
from tf_asap.rounds.training import split_validation
from tf_asap.pruning.policies import AccuracyGuaranteed

RUN_DIR = os.path.join("runs", "quickstart")


def main():
    # Data with the paper's normalisation. The policy decides on a validation
    # split of the training images; the test images are only reported.
    train, validation = split_validation(
        data.load_arrays("fashion_mnist", "train", limit=10_000), 0.1, seed=0
    )
    test = data.load_arrays("fashion_mnist", "test", limit=5_000)

    # 1. A baseline, trained with SGD + Nesterov, weight decay 2e-4 and a step
    #    schedule; the state of epoch k = 60% of training is saved for rewinding.
    model = zoo.build_model("vgg_small")
    baseline = train_baseline(
        model, train, validation, epochs=5, run_dir=RUN_DIR, verbose=2
    )
    print(f"baseline accuracy {baseline.accuracy:.2%}")

    # 2. Adaptive pruning: each round retrains epochs - k = 2 epochs from the
    #    rewind checkpoint; the policy keeps the accuracy drop within 1 point.
    policy = AccuracyGuaranteed(max_accuracy_drop=0.01, step=0.2, max_rounds=6)
    controller = RoundController(
        baseline.model, policy, train, validation, run_dir=RUN_DIR,
        epochs=baseline.epochs, rewind_checkpoint=baseline.rewind_checkpoint,
        criterion="attention", test_data=test, verbose=2,
    )
    result = controller.run()

    # 3. What was removed, layer by layer (dense = as built, effective = masked).
    cost = asap.count_cost(result.model)
    print(cost.to_table())
    best = result.best
    print(
        f"best round {result.best_round}: accuracy {best['accuracy']:.2%} "
        f"(baseline {result.rounds[0]['accuracy']:.2%}), params "
        f"-{best['params_reduction']:.1%}, FLOPs -{best['flops_reduction']:.1%}; "
        f"test accuracy {result.test['final']:.2%} (baseline {result.test['baseline']:.2%})"
    )
    # The slim model computes what the masked one computes, with fewer weights.
    x_test, y_test = data.load_arrays("fashion_mnist", "test", limit=1_000)
    masked = np.asarray(result.model(x_test[:64], training=False))
    slim = np.asarray(result.slim_model(x_test[:64], training=False))
    print(f"slim vs masked max abs difference: {np.abs(masked - slim).max():.1e}")
    print(f"slim model: {result.slim_model.count_params():,} params")

    # 4. Deployment: full-integer TFLite, checked in the LiteRT interpreter.
    x_calibration, _ = data.load_arrays("fashion_mnist", "train", limit=200)
    path = export.export_tflite(
        result.slim_model, os.path.join(RUN_DIR, "model_int8.tflite"), "int8",
        representative_data=x_calibration,
    )
    accuracy = export.evaluate_tflite(path, x_test, y_test)
    print(
        f"{path}: {os.path.getsize(path) / 1024:.1f} KiB, int8 accuracy {accuracy:.2%} "
        f"on the first {len(y_test):,} test images"
    )


if __name__ == "__main__":
    main()
