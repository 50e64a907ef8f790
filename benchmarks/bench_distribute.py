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
  the second call on a model; the first traces);
- *round*: `RoundController.run()` of a 1-round `ParamsTarget` run (round 0
  evaluation, then one round: statistics, masks, rewind, one retraining
  epoch, evaluation, final slimming and saving).

Wall and CPU seconds (every thread of the process) are both reported: when
other jobs share the machine, wall time mostly measures them, and CPU time
is the steadier measure of the work the strategy adds.

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


def clocks():
    """(wall seconds, CPU seconds of every thread of this process)."""
    return time.perf_counter(), time.process_time()


def since(start):
    """(wall, CPU) seconds since `start = clocks()`."""
    now = clocks()
    return now[0] - start[0], now[1] - start[1]


def time_once(strategy, data, calibration):
    """((wall, CPU) of the statistics, (wall, CPU) of the round) of one fresh model."""
    x, y = data
    with strategy.scope():
        model = asap.make_prunable(build(strategy))
    asap.collect_activation_stats(model, calibration)  # traces
    started = clocks()
    asap.collect_activation_stats(model, calibration)
    stats_s = since(started)
    with tempfile.TemporaryDirectory() as run_dir, strategy.scope():
        controller = asap.RoundController(
            build(strategy), asap.ParamsTarget(reduction=0.3, step=0.5, max_rounds=1),
            (x, y), run_dir=run_dir, epochs=2, rewind_epoch=1, batch_size=128,
            optimizer=keras.optimizers.SGD(0.05), calibration_data=calibration, verbose=0,
        )
        started = clocks()
        controller.run()
        round_s = since(started)
    return stats_s, round_s


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
    times = {name: [] for name in strategies}
    # Interleaved, so that other load on the machine hits both alike.
    for _ in range(args.repeats):
        for name, strategy in strategies.items():
            times[name].append(time_once(strategy, (x, y), calibration))
            (stats_wall, stats_cpu), (round_wall, round_cpu) = times[name][-1]
            print(f"{name}: stats {stats_wall:.2f} s ({stats_cpu:.2f} s CPU), round "
                  f"{round_wall:.2f} s ({round_cpu:.2f} s CPU)", flush=True)
    # Fastest repeat of each quantity, wall and CPU separately.
    rows = [
        (name, *(min(run[part][clock] for run in runs) for part in (0, 1) for clock in (0, 1)))
        for name, runs in times.items()
    ]
    base = rows[0][1:]
    command = "python benchmarks/bench_distribute.py " + " ".join(sys.argv[1:])
    lines = [
        "",
        f"## tf.distribute: MirroredStrategy on 2 logical CPUs vs one device "
        f"(bench_distribute.py, {datetime.date.today()})",
        "",
        f"`{command.strip()}` — small_cnn, {args.samples} Fashion-MNIST images, "
        f"{args.calibration} calibration images, batch 128, fastest of {args.repeats} "
        f"(interleaved); {os.cpu_count()} CPU cores shared by both logical devices and by other "
        f"jobs (load average {os.getloadavg()[0]:.1f} at the end); TF {tf.__version__}, "
        f"Keras {keras.__version__}.",
        "",
        "| strategy | stats wall (s) | stats CPU (s) | 1-round run wall (s) | 1-round run CPU (s) |",
        "|---|---|---|---|---|",
    ]
    for name, *values in rows:
        cells = [f"{value:.2f} ({value / reference:.2f}x)" for value, reference in zip(values, base)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("")
    with open(RESULTS, "a", encoding="utf-8") as file:
        file.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
