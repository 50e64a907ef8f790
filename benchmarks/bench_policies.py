"""What each adaptive policy costs: rounds and retraining epochs vs one baseline training.

Issue 4 target: on Fashion-MNIST with a small CNN, the total retraining an
adaptive policy needs to converge is at most 5x the epochs of training the
baseline once.

One baseline is trained with the paper's recipe (`tf_asap.train_baseline`,
SGD + Nesterov, step decay at 50%/75%, its epoch-k checkpoint saved), then
each policy runs `RoundController` from that baseline with the library's
default policy settings:

- `AccuracyGuaranteed(max_accuracy_drop=0.01)` (Algorithm 2),
- `ParamsTarget(reduction=0.7)` (Algorithm 4),
- `FlopsTarget(reduction=0.5)` (Algorithm 5).

Every round retrains `T - k` epochs (k = 60% of T, appendix A.1), so the
cost of a policy is `rounds x (T - k)` epochs; the ratio to `T` is the
number of baseline trainings the pruning costs. Wall-clock time is reported
too (it includes scoring, evaluation and checkpoints), as a ratio to the
baseline's own training time.

Runs are resumable: the baseline and every run directory live under
`--work-dir`; a killed benchmark started again continues where it stopped,
and finished runs are read back without retraining.

Usage:
    python benchmarks/bench_policies.py [--model vgg_small] [--train-limit 6000]
        [--test-limit 2000] [--epochs 10] [--rewind-epoch 6] [--rewind lr]
        [--learning-rate 0.05] [--policies accuracy params flops]
        [--max-rounds 50] [--step-growth 1] [--schedule paper]
        [--initial-threshold 0] [--work-dir benchmarks/work/policies]

`--schedule bisect` runs the grow-then-bisect search instead of Algorithm 2's
halving step (see `tf_asap.pruning.policies.bisection`), to compare the
epochs each schedule spends on the same baseline.
"""

import argparse
import datetime
import json
import os
import platform
import shlex
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402

import tf_asap  # noqa: E402
from tf_asap import data, recipe, zoo  # noqa: E402
from tf_asap.rounds import report  # noqa: E402
from tf_asap.rounds.controller import RoundController, train_baseline  # noqa: E402
from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TARGET_RATIO = 5.0

POLICIES = {
    "accuracy": ("AccuracyGuaranteed(max_accuracy_drop=0.01)",
                 lambda **options: AccuracyGuaranteed(max_accuracy_drop=0.01, **options)),
    "params": ("ParamsTarget(reduction=0.7)",
               lambda **options: ParamsTarget(reduction=0.7, **options)),
    "flops": ("FlopsTarget(reduction=0.5)",
              lambda **options: FlopsTarget(reduction=0.5, **options)),
}


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vgg_small", help="tf_asap.zoo model (default vgg_small)")
    parser.add_argument("--train-limit", type=int, default=6000,
                        help="first N Fashion-MNIST training images (default 6000)")
    parser.add_argument("--test-limit", type=int, default=2000,
                        help="first N test images, the validation set (default 2000)")
    parser.add_argument("--epochs", type=int, default=10, help="T, baseline epochs (default 10)")
    parser.add_argument("--rewind-epoch", type=int, default=None,
                        help="k (default 60%% of T, appendix A.1)")
    parser.add_argument("--rewind", choices=("lr", "weights"), default="lr",
                        help="learning-rate rewinding (the paper's A.1 runs, default) or weight rewinding")
    parser.add_argument("--learning-rate", type=float, default=0.05,
                        help="initial learning rate of the recipe (default 0.05, see tf_asap.recipe)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--calibration-samples", type=int, default=2048)
    parser.add_argument("--policies", nargs="+", choices=sorted(POLICIES),
                        default=["accuracy", "params", "flops"])
    parser.add_argument("--step-growth", type=float, default=1.0,
                        help="the policies' step_growth (default 1: the paper's halved step)")
    parser.add_argument("--schedule", choices=("paper", "bisect"), default="paper",
                        help="the policies' threshold search (default paper: Algorithm 2)")
    parser.add_argument("--initial-threshold", type=float, default=0.0,
                        help="T of round 1 (default 0)")
    parser.add_argument("--max-rounds", type=int, default=50,
                        help="max_rounds of every policy (default 50, the library's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", default=os.path.join(HERE, "work", "policies"))
    parser.add_argument("--results", default=os.path.join(HERE, "RESULTS.md"))
    parser.add_argument("--plot", default=os.path.join(HERE, "results", "bench_policies.png"))
    parser.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    return parser.parse_args()


def case_dir(args):
    rewind_epoch = args.rewind_epoch if args.rewind_epoch is not None else round(0.6 * args.epochs)
    name = (f"{args.model}_n{args.train_limit}_T{args.epochs}_k{rewind_epoch}"
            f"_lr{args.learning_rate:g}_s{args.seed}")
    return os.path.join(args.work_dir, name), rewind_epoch


def load_data(args):
    train = data.load_dataset("fashion_mnist", "train", batch_size=args.batch_size,
                              limit=args.train_limit, seed=args.seed)
    test = data.load_dataset("fashion_mnist", "test", batch_size=args.batch_size,
                             limit=args.test_limit)
    calibration = data.load_dataset("fashion_mnist", "train", batch_size=args.batch_size,
                                    shuffle=False, augment=False,
                                    limit=args.calibration_samples)
    return train, test, calibration


def run_baseline(args, directory, rewind_epoch, train, test):
    timing_path = os.path.join(directory, "baseline", "timing.json")
    keras.utils.set_random_seed(args.seed)
    model = zoo.build_model(args.model, input_shape=(28, 28, 1), num_classes=10)
    steps = int(train.cardinality())
    optimizer = recipe.paper_optimizer(args.epochs, steps, learning_rate=args.learning_rate)
    started = time.monotonic()
    baseline = train_baseline(
        model, train, test, args.epochs, directory, rewind_epoch=rewind_epoch,
        optimizer=optimizer, verbose=2,
    )
    seconds = time.monotonic() - started
    if baseline.history:  # trained now, not reused
        with open(timing_path, "w", encoding="utf-8") as file:
            json.dump({"seconds": seconds}, file)
    with open(timing_path, encoding="utf-8") as file:
        baseline_seconds = json.load(file)["seconds"]
    return baseline, baseline_seconds, steps


def run_policy(args, key, directory, baseline, train, test, calibration, steps):
    _, make_policy = POLICIES[key]
    keras.utils.set_random_seed(args.seed)
    model = keras.models.load_model(baseline.final_model_path)
    optimizer = None
    rewind_checkpoint = baseline.rewind_checkpoint
    if args.rewind == "lr":
        rewind_checkpoint = None
        optimizer = recipe.paper_optimizer(args.epochs, steps, learning_rate=args.learning_rate)
    started = time.monotonic()
    result = RoundController(
        model, make_policy(max_rounds=args.max_rounds, step_growth=args.step_growth,
                           schedule=args.schedule, initial_threshold=args.initial_threshold),
        train, test,
        run_dir=os.path.join(directory, f"{key}_{args.rewind}" + _variant(args)),
        epochs=args.epochs, rewind_epoch=baseline.rewind_epoch,
        rewind_checkpoint=rewind_checkpoint, calibration_data=calibration,
        optimizer=optimizer, verbose=1,
    ).run()
    seconds = time.monotonic() - started
    return result, seconds


def _variant(args):
    """The run-directory suffix of non-default search settings ("" for the paper's)."""
    suffix = f"_growth{args.step_growth:g}" if args.step_growth != 1.0 else ""
    if args.schedule != "paper":
        suffix += f"_{args.schedule}"
    if args.initial_threshold != 0.0:
        suffix += f"_t{args.initial_threshold:g}"
    return suffix


def _label(key, args):
    label = POLICIES[key][0]
    extra = []
    if args.step_growth != 1.0:
        extra.append(f"step_growth={args.step_growth:g}")
    if args.schedule != "paper":
        extra.append(f"schedule={args.schedule!r}")
    if args.initial_threshold != 0.0:
        extra.append(f"initial_threshold={args.initial_threshold:g}")
    return label[:-1] + "".join(f", {item}" for item in extra) + ")"


def summarise(key, result, args):
    records = result.rounds
    best = result.best
    rounds = len(records) - 1
    epochs = sum(r["epochs"] for r in records)
    wall = sum(r["wall_time_s"] for r in records)
    last = records[-1]
    return {
        "policy": _label(key, args),
        "rounds": rounds,
        "rollbacks": sum(r["decision"] == "rollback" for r in records),
        "epochs": epochs,
        "ratio": epochs / args.epochs,
        "wall_s": wall,
        "best_round": result.best_round,
        "accuracy": best["accuracy"],
        "accuracy_drop": best["accuracy_drop"],
        "params_reduction": best["params_reduction"],
        "flops_reduction": best["flops_reduction"],
        "stop": last["reason"].split(";")[0],
        "capped": "max_rounds" in last["reason"],
    }


def table(rows, args, baseline, baseline_seconds, rewind_epoch, steps):
    lines = [
        f"Baseline `{args.model}`: {args.epochs} epochs (T), {steps} steps of "
        f"{args.batch_size} per epoch on the first {args.train_limit} Fashion-MNIST "
        f"training images, test accuracy {100 * baseline.accuracy:.2f}% on the first "
        f"{args.test_limit} test images, {baseline_seconds / 60:.1f} min. Every round: "
        f"{args.rewind} rewinding to epoch k={rewind_epoch}, {args.epochs - rewind_epoch} "
        "epochs of retraining.",
        "",
        "| policy | rounds (rollbacks) | retraining epochs | x baseline epochs | wall x baseline "
        "| best round | accuracy drop | params red. | FLOPs red. | stopped because |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        verdict = "" if row["ratio"] <= TARGET_RATIO else " (over 5x)"
        lines.append(
            f"| `{row['policy']}` | {row['rounds']} ({row['rollbacks']}) | {row['epochs']} "
            f"| {row['ratio']:.1f}x{verdict} | {row['wall_s'] / baseline_seconds:.1f}x "
            f"| {row['best_round']} | {100 * row['accuracy_drop']:+.2f} pp "
            f"| {100 * row['params_reduction']:.1f}% | {100 * row['flops_reduction']:.1f}% "
            f"| {row['stop']} |"
        )
    return "\n".join(lines) + "\n"


def plot(results, args, path):
    """Accuracy drop and params reduction of every round against the retraining spent.

    Dots are acceptable rounds, crosses unacceptable ones, the star the
    policy's result; rounds that pruned nothing cost no epochs and stack up
    at the same x.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 5.6), dpi=120)
    FigureCanvasAgg(figure)
    top, bottom = figure.subplots(2, 1, sharex=True)
    for index, (key, result) in enumerate(results.items()):
        records = result.rounds
        spent, total = [], 0
        for record in records:
            total += record["epochs"]
            spent.append(total / args.epochs)
        color = f"C{index}"
        label = _label(key, args)
        for axis, field in ((top, "accuracy_drop"), (bottom, "params_reduction")):
            values = [100 * r[field] for r in records]
            axis.plot(spent, values, color=color, alpha=0.35, linewidth=1)
            good = [i for i, r in enumerate(records) if r["acceptable"]]
            bad = [i for i, r in enumerate(records) if not r["acceptable"]]
            axis.plot([spent[i] for i in good], [values[i] for i in good], "o", color=color,
                      markersize=4, label=label if axis is top else None)
            axis.plot([spent[i] for i in bad], [values[i] for i in bad], "x", color=color,
                      markersize=6)
            best = result.best_round
            axis.plot([spent[best]], [values[best]], "*", color=color, markersize=14,
                      markeredgecolor="black")
    for axis in (top, bottom):
        axis.axvline(TARGET_RATIO, color="tab:red", linestyle="--", linewidth=1, label="5x baseline")
        axis.grid(True, alpha=0.3)
    top.axhline(1.0, color="grey", linestyle=":", linewidth=1)
    top.set_ylabel("accuracy drop (pp)")
    bottom.set_ylabel("params reduction (%)")
    bottom.set_xlabel("retraining so far (baseline trainings)")
    top.legend(fontsize=7)
    top.set_title(f"{args.model} on Fashion-MNIST: cost of each policy")
    figure.tight_layout()
    os.makedirs(os.path.dirname(path), exist_ok=True)
    figure.savefig(path)


def main():
    args = parse_args()
    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(sys.argv[0])] + sys.argv[1:])
    load_before = os.getloadavg()[0]
    directory, rewind_epoch = case_dir(args)
    train, test, calibration = load_data(args)
    baseline, baseline_seconds, steps = run_baseline(args, directory, rewind_epoch, train, test)
    print(f"Baseline: accuracy {100 * baseline.accuracy:.2f}% in {baseline_seconds:.0f} s", flush=True)
    results, rows = {}, []
    for key in args.policies:
        result, _ = run_policy(args, key, directory, baseline, train, test, calibration, steps)
        results[key] = result
        rows.append(summarise(key, result, args))
        print(table(rows, args, baseline, baseline_seconds, rewind_epoch, steps), flush=True)
    text = table(rows, args, baseline, baseline_seconds, rewind_epoch, steps)
    plot(results, args, args.plot)
    load_after = os.getloadavg()[0]
    print(text)
    print(f"Plot: {args.plot}")
    if args.no_record:
        return
    relative_plot = os.path.relpath(args.plot, os.path.dirname(os.path.abspath(args.results)))
    entry = (
        f"\n## Adaptive policies: rounds and retraining epochs vs one baseline training "
        f"(bench_policies.py, {datetime.date.today().isoformat()})\n\n"
        f"Command: `{command}`  \n"
        f"Machine: {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"TensorFlow {__import__('tensorflow').__version__}, Keras {keras.__version__}, "
        f"tf_asap {tf_asap.__version__}; load average {load_before:.1f} before, "
        f"{load_after:.1f} after (the machine is shared: wall times are inflated, epoch "
        "counts are not).  \n"
        f"Goal: retraining epochs <= {TARGET_RATIO:g}x the baseline's epochs.\n\n"
        + text
        + f"\nPlot: `{relative_plot}` (accuracy drop and params reduction against the "
        "retraining spent, in baseline trainings).\n"
    )
    with open(args.results, "a", encoding="utf-8") as file:
        file.write(entry)
    print(f"Appended to {args.results}")


if __name__ == "__main__":
    main()
