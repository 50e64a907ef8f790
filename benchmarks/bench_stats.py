"""Cost of gathering activation statistics, next to one training epoch.

Issue target: gathering activation attention over 2,000 Fashion-MNIST images
costs <= 5% of one training epoch of the same small CNN on the full 60,000
training images, measured side by side in one run.

Both are timed on the same masked model (`make_prunable`), as a pruning run
uses them:

- *epoch*: `model.fit` over the 60,000 images, batch 128. The first epoch
  includes tracing the training step; the second (warm) is the reference.
- *stats cold*: the first `collect_activation_stats` call on the model,
  building the auxiliary model and tracing its reduction (paid once per run).
- *stats warm*: later calls (every later pruning round); median of 3.

Wall-clock ratios are the target; CPU-time ratios (`time.process_time`, all
threads of this process) are printed too because they hold when other jobs
share the machine.

Usage:
    python benchmarks/bench_stats.py [--samples 2000] [--epochs 2]
"""

import argparse
import datetime
import gzip
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap  # noqa: E402
from tf_asap.pruning.stats import collect_activation_stats  # noqa: E402

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"


def load_training_set():
    """Fashion-MNIST train split as float32 in [0, 1], via tf_asap.data if present."""
    try:
        from tf_asap.data import load_arrays

        images, labels = load_arrays("fashion_mnist", "train", normalize=False, download=False)
        source = "tf_asap.data.load_arrays"
    except (ImportError, ValueError):  # no data module, or it cannot find the files
        with gzip.open(os.path.join(FASHION_MNIST, "train-images-idx3-ubyte.gz")) as f:
            images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28, 1)
        with gzip.open(os.path.join(FASHION_MNIST, "train-labels-idx1-ubyte.gz")) as f:
            labels = np.frombuffer(f.read(), np.uint8, offset=8)
        source = FASHION_MNIST
    images = images.reshape(-1, 28, 28, 1).astype("float32") / 255.0
    return images, labels.astype("int32"), source


def small_cnn():
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Conv2D(32, 3, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(64, 3, activation="relu", name="conv2")(x)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name="fc1")(x)
    outputs = keras.layers.Dense(10, name="logits")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="calibration images (default 2000)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs timed (default 2; the last is the reference)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--results", default=os.path.join(os.path.dirname(__file__), "RESULTS.md"))
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    keras.utils.set_random_seed(0)
    x_train, y_train, source = load_training_set()
    model = tf_asap.make_prunable(small_cnn())
    model.compile(
        optimizer="adam",
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    calibration = x_train[: args.samples]

    def timed(function):
        """Wall and CPU seconds of one call (CPU time is robust to other load on the machine)."""
        wall, cpu = time.perf_counter(), time.process_time()
        result = function()
        return time.perf_counter() - wall, time.process_time() - cpu, result

    epochs = [
        timed(lambda: model.fit(x_train, y_train, batch_size=args.batch_size, epochs=1, verbose=0))[:2]
        for _ in range(args.epochs)
    ]
    cold = timed(lambda: collect_activation_stats(model, calibration))[:2]
    warm_runs = [timed(lambda: collect_activation_stats(model, calibration)) for _ in range(3)]
    warm = tuple(statistics.median(run[i] for run in warm_runs) for i in (0, 1))
    assert set(warm_runs[-1][2]) == {"conv1", "conv2", "fc1"}

    epoch = epochs[-1]
    header = (
        "| model | calibration images | epoch (60k) s, first / warm | stats s, cold / warm "
        "| cold / warm epoch | warm / warm epoch | same, CPU time | target |\n"
        "|---|---|---|---|---|---|---|---|"
    )
    row = (
        f"| small CNN (conv32-conv64-fc128, masked) | {args.samples:,} "
        f"| {epochs[0][0]:.1f} / {epoch[0]:.1f} | {cold[0]:.2f} / {warm[0]:.2f} "
        f"| {cold[0] / epoch[0]:.1%} | {warm[0] / epoch[0]:.1%} "
        f"| {cold[1] / epoch[1]:.1%} / {warm[1] / epoch[1]:.1%} | <= 5% |"
    )
    print(header)
    print(row)
    command = "python benchmarks/bench_stats.py " + " ".join(
        f"--{k} {v}" for k, v in (("samples", args.samples), ("epochs", args.epochs), ("batch-size", args.batch_size))
    )
    if not os.path.exists(args.results):
        with open(args.results, "w") as results:
            results.write("# Benchmark results (appended by the scripts in benchmarks/)\n")
    with open(args.results, "a") as results:
        results.write(
            f"\n### Activation statistics vs one training epoch ({datetime.date.today()}, "
            f"{os.cpu_count()} cores, TF {__import__('tensorflow').__version__}, data: {source})\n"
            f"Machine load average (1 min) at start / end: {load_before:.1f} / {os.getloadavg()[0]:.1f} "
            "(other jobs share the cores; the CPU-time ratios are robust to that).\n"
            f"Command: `{command}`\n\n{header}\n{row}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
