"""Cost of `MirroredStrategy` on two logical CPU devices against one device, for a small round.

The same seeded pruning run is timed twice in one process: on TensorFlow's
default strategy (one device) and under `MirroredStrategy(["/cpu:0",
"/cpu:1"])`. Both logical devices share the machine's physical cores, so the
strategy can only add cost here (per-replica splitting of every batch, an
all-reduce of gradients per step, and of statistics per calibration batch);
the numbers measure that overhead, not a speed-up. On several GPUs each
replica has its own device and the same code divides the work instead.

What is timed, per strategy:

- *stats*: `collect_activation_stats` over the calibration samples (warm:
  the second call; the first traces);
- *round*: `RoundController.run()` of a 1-round `ParamsTarget` run (round 0
  evaluation, then one round: statistics, masks, rewind, one retraining
  epoch, evaluation, final slimming and saving).

Usage:
    python benchmarks/bench_distribute.py [--samples 4096] [--calibration 1024] [--repeats 2]
"""

import argparse
import datetime
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

# Two logical devices on the CPU, before anything touches the devices.
_CPU = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(_CPU, [tf.config.LogicalDeviceConfiguration()] * 2)

import keras  # noqa: E402
import numpy as np  # noqa: E402

import tf_asap as asap  # noqa: E402
from tf_asap.data import load_arrays  # noqa: E402
from tf_asap.zoo import small_cnn  # noqa: E402

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "RESULTS.md")


def build(strategy):
    keras.utils.set_random_seed(0)
    with strategy.scope():
        return small_cnn(input_shape=(28, 28, 1), num_classes=10)


def time_strategy(strategy, data, calibration, repeats):
    """(stats seconds, round seconds): the fastest of `repeats`."""
    x, y = data
    stats_times, round_times = [], []
    for _ in range(repeats):
        with strategy.scope():
            model = asap.make_prunable(build(strategy))
        asap.collect_activation_stats(model, calibration)  # traces
        started = time.perf_counter()
        asap.collect_activation_stats(model, calibration)
        stats_times.append(time.perf_counter() - started)
        with tempfile.TemporaryDirectory() as run_dir, strategy.scope():
            controller = asap.RoundController(
                build(strategy), asap.ParamsTarget(reduction=0.3, step=0.5, max_rounds=1),
                (x, y), run_dir=run_dir, epochs=2, rewind_epoch=1, batch_size=128,
                optimizer=keras.optimizers.SGD(0.05), calibration_data=calibration, verbose=0,
            )
            started = time.perf_counter()
            controller.run()
            round_times.append(time.perf_counter() - started)
    return min(stats_times), min(round_times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096, help="training images")
    parser.add_argument("--calibration", type=int, default=1024, help="calibration images")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    images, labels = load_arrays(
        "fashion_mnist", "train", limit=args.samples, normalize=False, download=False
    )
    x = images[: args.samples].reshape(-1, 28, 28, 1).astype("float32") / 255.0
    y = labels[: args.samples].astype("int32")
    calibration = x[: args.calibration]
    strategies = {
        "one device (default strategy)": tf.distribute.get_strategy(),
        "MirroredStrategy, 2 logical CPUs": tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]),
    }
    rows = []
    for name, strategy in strategies.items():
        stats_s, round_s = time_strategy(strategy, (x, y), calibration, args.repeats)
        rows.append((name, stats_s, round_s))
        print(f"{name}: stats {stats_s:.2f} s, round {round_s:.2f} s", flush=True)
    base_stats, base_round = rows[0][1], rows[0][2]
    command = "python benchmarks/bench_distribute.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        f"## tf.distribute: MirroredStrategy on 2 logical CPUs vs one device "
        f"(bench_distribute.py, {datetime.date.today()})",
        "",
        f"`{command.strip()}` — small_cnn, {args.samples} Fashion-MNIST images, "
        f"{args.calibration} calibration images, batch 128, fastest of {args.repeats}; "
        f"{os.cpu_count()} CPU cores shared by both logical devices; TF {tf.__version__}, "
        f"Keras {keras.__version__}.",
        "",
        "| strategy | stats (s) | vs one | 1-round run (s) | vs one |",
        "|---|---|---|---|---|",
    ]
    for name, stats_s, round_s in rows:
        lines.append(
            f"| {name} | {stats_s:.2f} | {stats_s / base_stats:.2f}x | {round_s:.2f} | "
            f"{round_s / base_round:.2f}x |"
        )
    lines.append("")
    with open(RESULTS, "a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
