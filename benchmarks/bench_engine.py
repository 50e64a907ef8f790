"""What retraining the slimmed model and distillation buy (issue 15, items 3 and 4).

Two measurements, each runnable alone:

`speed`: the epoch time of the slimmed model against the masked model it came
from, next to their FLOPs ratio. `vgg_small` and `resnet20` are built for
Fashion-MNIST shapes (28x28x1), every prunable channel group keeps a random
half of its channels, and both models train the same images with the same
optimizer (the slim one built by
`tf_asap.rounds.slim_training.build_slim_trainable`). Each model trains
`--repeats + 1` epochs; the first (tracing) is dropped and the median of the
rest is reported. Small models on a CPU are overhead-bound, so the time ratio
is expected above the FLOPs ratio.

`distillation`: the shipped baseline `saved_models/fashion_mnist_cnn` is
pruned once, 50% of each group's channels by activation attention
(`ratio_masks(scope="group")`), and the slimmed model is fine-tuned for
`--epochs` epochs on `--train-images` training images, once without and once
with distillation from the unpruned model (`Distiller`, teacher outputs
cached by `TeacherOutputs`), from the same pruned weights with the same
optimizer and data order. Test accuracy on `--test-images` test images.

Results print as a table and go, with the command line, to a JSON file.

Usage:
    python benchmarks/bench_engine.py speed [--images 2048] [--repeats 3]
    python benchmarks/bench_engine.py distillation [--epochs 2] [--alpha 0.5]
        [--temperature 4] [--train-images 6000] [--test-images 10000]
    python benchmarks/bench_engine.py all
    (--results PATH, default benchmarks/results/engine.json)

Measured on 2026-12-02, 2 CPU cores shared with other jobs (one seed; the
per-epoch times vary by up to 2x between epochs on this shared machine):

    python benchmarks/bench_engine.py speed --images 2048 --repeats 3

    model      FLOPs ratio  masked s  slim s  time ratio
    vgg_small        0.254      3.03    1.29       0.426
    resnet20         0.251      9.53    5.37       0.564

    python benchmarks/bench_engine.py distillation --train-images 20000 --epochs 3

    74.4% params removed; baseline 0.9269; teacher outputs cached in 7.7 s
    method            test acc  drop pts  train s
    fine-tune           0.8979      2.90     31.9
    distil a=0.5 t=4    0.9038      2.31     28.6
"""

import argparse
import datetime
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

import tf_asap  # noqa: E402, F401 - registers the masked layer and the recipe with Keras
from tf_asap.core.counting import count_cost  # noqa: E402
from tf_asap.core.analysis import channel_groups  # noqa: E402
from tf_asap.core.masks import apply_masks, make_prunable  # noqa: E402
from tf_asap.data import load_arrays  # noqa: E402
from tf_asap.files import atomic_write_json  # noqa: E402
from tf_asap.pruning.importance import ActivationAttention  # noqa: E402
from tf_asap.pruning.thresholds import ratio_masks  # noqa: E402
from tf_asap.rounds.distillation import Distiller, TeacherOutputs  # noqa: E402
from tf_asap.rounds.slim_training import build_slim_trainable, slicing_plan  # noqa: E402
from tf_asap.zoo import build_model  # noqa: E402

BASELINE = os.path.join("saved_models", "fashion_mnist_cnn", "baseline", "model.keras")
LOSS = "sparse_categorical_crossentropy"


class EpochTimer(keras.callbacks.Callback):
    """Wall time of every epoch."""

    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def random_half_masks(model, seed):
    rng = np.random.default_rng(seed)
    masks = {}
    for group in channel_groups(model):
        if group.prunable:
            keep = np.zeros(group.size, bool)
            keep[rng.choice(group.size, max(group.min_filters, group.size // 2), replace=False)] = True
            masks[group.name] = keep
    return masks


def epoch_seconds(model, x, y, repeats, batch_size):
    timer = EpochTimer()
    model.fit(x, y, batch_size=batch_size, epochs=repeats + 1, callbacks=[timer], verbose=0)
    return float(np.median(timer.seconds[1:])), [round(s, 3) for s in timer.seconds]


def measure_speed(args):
    rng = np.random.default_rng(args.seed)
    x = rng.normal(size=(args.images, 28, 28, 1)).astype("float32")
    y = rng.integers(0, 10, args.images).astype("int32")
    rows = []
    for name in ("vgg_small", "resnet20"):
        keras.utils.set_random_seed(args.seed)
        pm = make_prunable(build_model(name, input_shape=(28, 28, 1)))
        apply_masks(pm, random_half_masks(pm, args.seed))
        pm.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss=LOSS)
        cost = count_cost(pm)
        slim_model, _ = build_slim_trainable(pm, None, slicing_plan(pm), loss=LOSS, metrics=())
        masked_time, masked_all = epoch_seconds(pm, x, y, args.repeats, args.batch_size)
        slim_time, slim_all = epoch_seconds(slim_model, x, y, args.repeats, args.batch_size)
        rows.append({
            "model": name,
            "flops_ratio": cost.effective_flops / cost.flops,
            "params_ratio": cost.effective_params / cost.params,
            "masked_epoch_s": masked_time,
            "slim_epoch_s": slim_time,
            "time_ratio": slim_time / masked_time,
            "masked_epochs_s": masked_all,
            "slim_epochs_s": slim_all,
        })
    print(f"\nEpoch time, slim vs masked ({args.images} images, batch {args.batch_size}, "
          f"median of {args.repeats} epochs after one warm-up)")
    print(f"{'model':<10} {'FLOPs ratio':>11} {'masked s':>9} {'slim s':>7} {'time ratio':>10}")
    for row in rows:
        print(f"{row['model']:<10} {row['flops_ratio']:>11.3f} {row['masked_epoch_s']:>9.2f} "
              f"{row['slim_epoch_s']:>7.2f} {row['time_ratio']:>10.3f}")
    return rows


def fine_tune(pruned, teacher, cache, data, args, distil):
    """Fine-tunes a slim copy of `pruned` and returns (test accuracy, seconds)."""
    (x, y), (x_test, y_test) = data
    keras.utils.set_random_seed(args.seed)
    optimizer = keras.optimizers.SGD(args.learning_rate, momentum=0.9, nesterov=True)
    student, _ = build_slim_trainable(pruned, None, slicing_plan(pruned), optimizer=optimizer,
                                      loss=LOSS, metrics=("accuracy",))
    started = time.perf_counter()
    if distil:
        trainer = Distiller(student, teacher, alpha=args.alpha, temperature=args.temperature)
        trainer.compile(optimizer=student.optimizer, loss=LOSS, metrics=["accuracy"])
        trainer.fit(cache.dataset(x, y, batch_size=args.batch_size, seed=args.seed),
                    epochs=args.epochs, shuffle=False, verbose=0)
    else:
        # The same shuffling as TeacherOutputs.dataset: same seed, same order.
        train = (tf.data.Dataset.from_tensor_slices((x, y))
                 .shuffle(len(x), seed=args.seed, reshuffle_each_iteration=True)
                 .batch(args.batch_size))
        student.fit(train, epochs=args.epochs, shuffle=False, verbose=0)
    seconds = time.perf_counter() - started
    _, accuracy = student.evaluate(x_test, y_test, batch_size=256, verbose=0)
    return float(accuracy), seconds


def measure_distillation(args):
    x, y = load_arrays("fashion_mnist", "train", limit=args.train_images, download=False)
    x_test, y_test = load_arrays("fashion_mnist", "test", limit=args.test_images, download=False)
    teacher = keras.saving.load_model(BASELINE)
    pruned = keras.saving.load_model(BASELINE)
    _, baseline_accuracy = teacher.evaluate(x_test, y_test, batch_size=256, verbose=0)
    scores = ActivationAttention().score(pruned, x[:1024])
    apply_masks(pruned, ratio_masks(pruned, scores, 0.5, scope="group"))
    cost = count_cost(pruned)
    _, pruned_accuracy = pruned.evaluate(x_test, y_test, batch_size=256, verbose=0)
    cache = TeacherOutputs(teacher)
    started = time.perf_counter()
    cache.outputs(x)
    teacher_seconds = time.perf_counter() - started
    data = ((x, y), (x_test, y_test))
    rows = []
    for label, distil in (("fine-tune", False), (f"distil a={args.alpha:g} t={args.temperature:g}", True)):
        accuracy, seconds = fine_tune(pruned, teacher, cache, data, args, distil)
        rows.append({"method": label, "distillation": distil, "test_accuracy": accuracy,
                     "drop_points": 100 * (baseline_accuracy - accuracy), "train_s": seconds})
    print(f"\nOne-shot 50% per group (attention), {cost.params_reduction:.1%} params removed, "
          f"{args.epochs} epoch(s) on {len(x)} images, test on {len(x_test)}")
    print(f"baseline {baseline_accuracy:.4f}, pruned before fine-tuning {pruned_accuracy:.4f}, "
          f"teacher outputs computed once in {teacher_seconds:.1f} s")
    print(f"{'method':<24} {'test acc':>8} {'drop pts':>8} {'train s':>8}")
    for row in rows:
        print(f"{row['method']:<24} {row['test_accuracy']:>8.4f} {row['drop_points']:>8.2f} {row['train_s']:>8.1f}")
    return {"baseline_accuracy": float(baseline_accuracy), "pruned_accuracy": float(pruned_accuracy),
            "params_reduction": cost.params_reduction, "teacher_seconds": teacher_seconds, "rows": rows}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("speed", "distillation", "all"))
    parser.add_argument("--images", type=int, default=2048, help="speed: images per epoch")
    parser.add_argument("--repeats", type=int, default=3, help="speed: timed epochs per model")
    parser.add_argument("--epochs", type=int, default=2, help="distillation: fine-tuning epochs")
    parser.add_argument("--alpha", type=float, default=0.5)
    parser.add_argument("--temperature", type=float, default=4.0)
    parser.add_argument("--learning-rate", type=float, default=0.01)
    parser.add_argument("--train-images", type=int, default=6000)
    parser.add_argument("--test-images", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--results", default=os.path.join("benchmarks", "results", "engine.json"))
    args = parser.parse_args(argv)
    results = {
        "command": "python " + " ".join(shlex.quote(a) for a in [sys.argv[0], *(argv or sys.argv[1:])]),
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "versions": {"keras": keras.__version__},
        "settings": vars(args),
    }
    if args.what in ("speed", "all"):
        results["speed"] = measure_speed(args)
    if args.what in ("distillation", "all"):
        results["distillation"] = measure_distillation(args)
    atomic_write_json(args.results, results)
    print(f"\nwrote {args.results}")


if __name__ == "__main__":
    main()
