"""`tf-asap demo`: the main job — prune the shipped baseline, export, summarise."""

import os
import time

from tf_asap.cli import datasets, directories, prune, prune_settings
from tf_asap.cli.flags import (
    PROG,
    HelpFormatter,
    UsageError,
    add_debug,
    add_verbose,
    fraction,
    positive_float,
    positive_int,
    validation_fraction,
)
from tf_asap.cli.output import count_text, percent, say, size_text, table


# Flags of the search and retraining, passed on to the pruning run as given.
ENGINE_FLAGS = (
    "schedule", "max_fraction", "size_tolerance", "scan_samples", "early_rejection", "retrain",
    "distill", "distill_alpha", "distill_temperature", "final_epochs", "final_max_drop", "round_to",
)


# Test images the int8 model runs one by one under TFLite Micro (seconds, not minutes).
MICRO_TEST_IMAGES = 1000

# The main job's engine: the bisecting search with its scan, and a final
# fine-tuning of the chosen round (see README, "What the main job does").
MAIN_JOB_ENGINE = {"schedule": "bisect", "final_epochs": 12, "final_max_drop": 0.005}


def add_parser(commands):
    """Adds `demo` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "demo", formatter_class=HelpFormatter,
        help="the main job: prune the shipped Fashion-MNIST baseline, export, summarize",
        description=(
            "Prune the shipped Fashion-MNIST baseline with the accuracy-guaranteed "
            "policy, export the baseline and the pruned model as SavedModel and "
            "int8 TFLite, write the pruned model's TFLite Micro bundle, and print test "
            "accuracy (Keras and int8 LiteRT), params, FLOPs, file sizes and batch-1 "
            "LiteRT latency side by side. Every decision uses a seeded --validation-split "
            "of the training images; the test set is only reported. The defaults keep it within 15 minutes on 2 CPU cores: each round "
            "retrains the slimmed model for one epoch with learning-rate rewinding, the "
            "bisecting search starts from a sensitivity scan, and the chosen round is "
            "fine-tuned for 12 epochs and must then be within 0.5 points of the baseline on "
            "the validation split, else the next smaller accepted round is fine-tuned instead. "
            "Re-running with the same --run-dir resumes."
        ),
    )
    parser.add_argument("--baseline", default=directories.DEFAULT_DEMO_BASELINE,
                        help="directory written by `tf-asap train`")
    parser.add_argument("--run-dir", default=os.path.join("runs", "main_job"), help="run directory")
    parser.add_argument("--max-accuracy-drop", type=fraction, default=0.04,
                        help="largest accuracy drop on the validation split after a round's "
                        "one epoch of retraining, before the final fine-tuning, which recovers "
                        "most of it (fraction or percent)")
    parser.add_argument("--validation-split", type=validation_fraction, default=0.1,
                        help="fraction of the training images held out for decisions")
    parser.add_argument("--rewind", choices=("weights", "lr"), default="lr", help="rewinding")
    parser.add_argument("--epochs-per-round", type=positive_int, default=1,
                        help="retraining epochs per round (with --rewind lr)")
    parser.add_argument("--epochs", type=positive_int, default=2,
                        help="length of the learning-rate schedule whose last --epochs-per-round "
                        "epochs each round replays, with --rewind lr (2 and 1: half an epoch at "
                        "0.1x and half at 0.01x the training's initial learning rate)")
    parser.add_argument("--limit", type=positive_int, default=None,
                        help="training images used for retraining (default: all)")
    parser.add_argument("--max-rounds", type=positive_int, default=12, help="last pruning round")
    parser.add_argument("--step", type=positive_float, default=0.2,
                        help="initial threshold step λ (relative units)")
    parser.add_argument("--calibration-samples", type=positive_int, default=1024,
                        help="training images the filters are scored on")
    parser.add_argument("--latency-runs", type=positive_int, default=300,
                        help="timed batch-1 runs per model")
    prune.add_search_flags(parser.add_argument_group("search"), MAIN_JOB_ENGINE)
    prune.add_retraining_flags(parser.add_argument_group("retraining"), MAIN_JOB_ENGINE)
    add_verbose(parser)
    add_debug(parser)
    parser.set_defaults(handler=run, **MAIN_JOB_ENGINE)


def _figures(label, model, name, out, calibration, test):
    """Exports `model`; returns its accuracies, costs and sizes."""
    from tf_asap import export
    from tf_asap.core.counting import count_cost

    model_name = name if label == "pruned" else f"{name}_baseline"
    saved_model = export.export_saved_model(
        model, os.path.join(out, "saved_model"), model_name, overwrite=True
    )
    tflite = export.export_tflite(
        model, os.path.join(out, f"{model_name}_int8.tflite"), "int8",
        representative_data=calibration,
    )
    cost = count_cost(model)
    return {
        "accuracy": datasets.accuracy(model, test, batch_size=500),
        "int8_accuracy": export.evaluate_tflite(tflite, *test),
        "params": cost.params, "flops": cost.flops,
        "saved_model": saved_model, "saved_model_size": directories.directory_size(saved_model),
        "tflite": tflite, "tflite_size": os.path.getsize(tflite),
    }


def _summary_rows(base, small):
    def ratio(key):
        return f"{base[key] / small[key]:.2f}x smaller" if small[key] else "-"

    def points(key):
        return f"{100 * (small[key] - base[key]):+.2f} pts"

    return [
        ("", "baseline", "pruned", "change"),
        ("test accuracy (Keras, float32)", percent(base["accuracy"]), percent(small["accuracy"]),
         points("accuracy")),
        ("test accuracy (LiteRT, int8)", percent(base["int8_accuracy"]),
         percent(small["int8_accuracy"]), points("int8_accuracy")),
        ("params", f"{base['params']:,}", f"{small['params']:,}", ratio("params")),
        ("FLOPs per image", count_text(base["flops"]), count_text(small["flops"]), ratio("flops")),
        ("SavedModel size", size_text(base["saved_model_size"]),
         size_text(small["saved_model_size"]), ratio("saved_model_size")),
        ("int8 .tflite size", size_text(base["tflite_size"]), size_text(small["tflite_size"]),
         ratio("tflite_size")),
        ("batch-1 latency, int8 LiteRT", f"{base['latency_ms']:.3f} ms",
         f"{small['latency_ms']:.3f} ms", f"{base['latency_ms'] / small['latency_ms']:.2f}x faster"),
    ]


def run(args):
    """Runs the main job; returns the exit code."""
    baseline_dir = args.baseline
    if not os.path.isfile(os.path.join(baseline_dir, directories.BASELINE_MODEL)):
        raise UsageError(
            f"--baseline {baseline_dir} has no {directories.BASELINE_MODEL}. Run the demo from "
            f"the repository root (it ships {directories.DEFAULT_DEMO_BASELINE}), or make a "
            f"baseline with `{PROG} train --output DIR` and pass --baseline DIR."
        )
    started = time.monotonic()
    settings = {key: None for key in prune_settings.KEYS}
    settings.update(
        model=baseline_dir, max_accuracy_drop=args.max_accuracy_drop, rewind=args.rewind,
        epochs_per_round=args.epochs_per_round, epochs=args.epochs, limit=args.limit,
        max_rounds=args.max_rounds, step=args.step, calibration_samples=args.calibration_samples,
        validation_split=args.validation_split,
        **{key: getattr(args, key) for key in ENGINE_FLAGS},
    )
    settings = prune_settings.resolve(settings, args.run_dir, resume=True)
    if os.path.exists(os.path.join(args.run_dir, directories.RUN_MANIFEST)):
        say(f"Continuing the run in {args.run_dir} (delete it to start over).")
    result, data = prune.run_pruning(settings, args.run_dir, args.verbose)
    prune_seconds = time.monotonic() - started

    from tf_asap import export  # heavy: once the arguments are known good

    say("")
    say("Exporting the baseline and the pruned model...")
    models = {
        "baseline": directories.deployable(directories.load_model(settings["model_path"])),
        "pruned": result.slim_model,
    }
    name = directories.c_identifier(os.path.basename(os.path.normpath(baseline_dir)))
    out = os.path.join(args.run_dir, "export")
    calibration = data.calibration[0][:200]
    figures = {
        label: _figures(label, model, name, out, calibration, data.test)
        for label, model in models.items()
    }
    latency = export.latency_report(
        {label: figures[label]["tflite"] for label in models},
        costs={label: (figures[label]["params"], figures[label]["flops"]) for label in models},
        num_runs=args.latency_runs,
    )
    for row in latency:
        figures[row.name]["latency_ms"] = row.latency_ms
    micro = export.export_micro(
        result.slim_model, os.path.join(out, "micro"), name, representative_data=calibration,
        evaluation_data=tuple(part[:MICRO_TEST_IMAGES] for part in data.test),
    )
    total_seconds = time.monotonic() - started
    base, small = figures["baseline"], figures["pruned"]
    best = result.best
    say("")
    say(
        f"Summary: {data.description} test set ({len(data.test[1]):,} images, never used by a "
        f"decision), {prune_settings.describe_policy(settings)}, best round {result.best_round} "
        f"of {len(result.rounds) - 1}."
    )
    tuned = result.final_tuning
    say(
        f"Decisions used the validation data, {data.validation_label}: accuracy "
        f"{percent(result.rounds[0]['accuracy'])} -> {percent(best['accuracy'])} at the chosen "
        f"round{prune.tuning_phrase(tuned)}."
    )
    say(table(_summary_rows(base, small)))
    caveat = export.int8_latency_caveat()
    if caveat:
        say(caveat)
    say("")
    say(f"Pruned SavedModel: {small['saved_model']}")
    say(f"Pruned int8 TFLite: {small['tflite']}")
    say(f"Microcontroller bundle (C array, op resolver, tensor arena {micro.arena_size:,} B): "
        f"{os.path.dirname(micro.source_path)}; under TFLite Micro the int8 model scores "
        f"{percent(micro.accuracy)} on the first {micro.evaluated_samples:,} test images "
        f"(float32 Keras: {percent(micro.float_accuracy)})")
    say(f"Round report: {os.path.join(args.run_dir, directories.REPORT)}")
    from tf_asap.rounds.run_directory import LAYERS_PLOT_NAME, PLOT_NAME

    say(f"Pictures: {os.path.join(args.run_dir, PLOT_NAME)} (Figure 4: drop and size per round), "
        f"{os.path.join(args.run_dir, LAYERS_PLOT_NAME)} (filters kept per layer)")
    say(f"Time: pruning {prune_seconds / 60:.1f} min, total {total_seconds / 60:.1f} min.")
    directories.write_json(os.path.join(out, "summary.json"), {
        "command": directories.command_line(args.argv), "date": directories.today(),
        "best_round": result.best_round, "rounds": len(result.rounds) - 1,
        "validation": data.validation_label,
        "validation_accuracy": {
            "baseline": result.rounds[0]["accuracy"], "pruned": best["accuracy"],
            "fine_tuned": tuned["validation_accuracy_after"] if tuned and tuned["epochs"] else None,
        },
        "prune_seconds": round(prune_seconds, 1), "total_seconds": round(total_seconds, 1),
        "baseline": base, "pruned": small,
        "micro": {"directory": os.path.dirname(micro.source_path), "arena_size": micro.arena_size,
                  "accuracy": micro.accuracy, "evaluated_samples": micro.evaluated_samples},
    })
    return 0

