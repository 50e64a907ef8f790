"""`tf-asap export`: SavedModel, TFLite and microcontroller bundles of a model."""

import os

from tf_asap.cli import datasets, directories
from tf_asap.cli.flags import (
    QUANTIZATIONS,
    HelpFormatter,
    UsageError,
    add_data,
    add_debug,
    positive_int,
)
from tf_asap.cli.output import percent, say, size_text, table


def add_parser(commands):
    """Adds `export` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "export", formatter_class=HelpFormatter,
        help="export a model as SavedModel, TFLite or a microcontroller bundle",
        description=(
            "Export a model for deployment. MODEL is a .keras file, a pruning run "
            "directory (its final/slim.keras) or a training directory (its "
            "baseline); masked models are slimmed first.\n\n"
            "Formats: saved_model (OUTPUT/saved_model/NAME/VERSION, the TF Serving "
            "layout, signature serving_default with keys input_0 / output_0), "
            "tflite (one file per --quantization), micro (int8 .tflite, C array, op "
            "resolver and tensor arena size under OUTPUT/micro). Inputs are what the "
            "model was trained on: normalised images for the named data sets, raw "
            "pixels for a model that starts with Rescaling, [0, 1] pixels otherwise."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file, run directory or training directory")
    parser.add_argument("--output", required=True, help="output directory")
    parser.add_argument("--format", nargs="+", choices=("saved_model", "tflite", "micro"),
                        default=None, help="what to write (default: saved_model tflite)")
    parser.add_argument("--quantization", nargs="+", choices=QUANTIZATIONS, default=None,
                        help="TFLite modes: none (float32), float16, dynamic, int8 (full "
                        "integer, needs --data for calibration) (default: none)")
    parser.add_argument("--name", default=None,
                        help="model name in paths and C identifiers (default: the name of "
                        "MODEL's directory or file)")
    parser.add_argument("--version", type=positive_int, default=1, dest="model_version", metavar="N",
                        help="SavedModel version (TF Serving loads the highest; an existing "
                        "version directory is replaced)")
    parser.add_argument("--evaluate", action="store_true",
                        help="measure the accuracy of the exported files on the test data")
    parser.add_argument("--latency", action="store_true",
                        help="measure batch-1 LiteRT latency of the .tflite files")
    parser.add_argument("--latency-runs", type=positive_int, default=200,
                        help="timed runs per model for --latency")
    parser.add_argument("--calibration-samples", type=positive_int, default=200,
                        help="training images for int8 calibration")
    parser.add_argument("--evaluation-samples", type=positive_int, default=None, dest="test_limit",
                        help="test images for --evaluate (default: all)")
    add_data(parser, "the data the run or training used", training=False)
    add_debug(parser)
    parser.set_defaults(handler=run)


def _model_to_export(path):
    """(.keras path, its saved settings) for a file, a run or a training directory."""
    directories.existing_path(path, "MODEL")
    if os.path.isdir(path):
        for candidate, settings in (
            (directories.SLIM_MODEL, directories.PRUNE_SETTINGS),
            (directories.BASELINE_MODEL, directories.TRAIN_SETTINGS),
        ):
            if os.path.isfile(os.path.join(path, candidate)):
                saved = {}
                if os.path.isfile(os.path.join(path, settings)):
                    saved = directories.read_json(os.path.join(path, settings))
                return os.path.join(path, candidate), saved
        raise UsageError(
            f"MODEL {path} is a directory without {directories.SLIM_MODEL} (a finished "
            f"pruning run) or {directories.BASELINE_MODEL} (a training): pass one of those "
            "or a .keras file."
        )
    if not path.endswith(".keras"):
        raise UsageError(f"MODEL {path} is not a .keras file.")
    return path, {}


def run(args):
    """Exports; returns the exit code."""
    path, saved = _model_to_export(args.model)
    spec = args.data or saved.get("dataset")
    formats = set(args.format or ["saved_model", "tflite"])
    quantizations = list(dict.fromkeys(args.quantization or ["none"]))
    needs_data = "micro" in formats or args.evaluate or ("tflite" in formats and "int8" in quantizations)
    if needs_data and spec is None:
        raise UsageError(
            "--data is needed for int8 calibration, --format micro and --evaluate: "
            f"{args.model} does not say which data it was trained on. Pass --data DIR, "
            "FILE.npz, tfds:NAME or a named set such as fashion_mnist."
        )
    if args.latency and "tflite" not in formats:
        raise UsageError("--latency measures .tflite files: add --format tflite.")
    from tf_asap import export  # heavy: imported once the arguments are known good

    model = directories.deployable(directories.load_model(path))
    # Named after the run or training directory, or the .keras file.
    name = args.name or directories.c_identifier(
        os.path.basename(os.path.normpath(args.model)) if os.path.isdir(args.model)
        else os.path.splitext(os.path.basename(path))[0]
    )
    calibration = evaluation = None
    if needs_data:
        # Where the data is comes from the run or training; how much to use, from the flags.
        settings = {key: saved.get(key) for key in ("test_data", "seed", "validation_split")}
        settings.update({key: getattr(args, key) for key in
                         ("test_data", "test_limit", "validation_split") if getattr(args, key)})
        settings["calibration_samples"] = args.calibration_samples
        data = datasets.load_for_model(model, spec, settings, need_train=False)
        calibration = data.calibration[0]
        evaluation = data.test
        if args.evaluate and evaluation is None:
            raise UsageError(
                f"--evaluate needs test data and {data.description} has none: pass "
                "--test-data DIR (or x_test/y_test in the .npz)."
            )
    rows, tflite_files = _write(args, model, name, formats, quantizations, calibration, evaluation)
    say(table(rows, ["<", "<", ">", ">"]))
    if args.evaluate:
        say(f"Keras model accuracy on the same {len(evaluation[1]):,} test images: "
            f"{percent(datasets.accuracy(model, evaluation))}")
    if args.latency:
        from tf_asap.core.counting import count_cost

        cost = count_cost(model)
        rows = export.latency_report(
            tflite_files, costs={key: cost for key in tflite_files}, num_runs=args.latency_runs,
        )
        say("")
        say("Batch-1 LiteRT latency (1 thread):")
        say(export.render_latency_table(rows))
        caveat = export.int8_latency_caveat()
        if caveat and "int8" in quantizations:
            say(caveat)
    return 0


def _write(args, model, name, formats, quantizations, calibration, evaluation):
    """Writes the asked formats; returns the table rows and the .tflite files."""
    from tf_asap import export

    os.makedirs(args.output, exist_ok=True)
    rows = [("file", "format", "size", "accuracy")]
    tflite_files = {}
    if "saved_model" in formats:
        written = export.export_saved_model(
            model, os.path.join(args.output, "saved_model"), name,
            version=args.model_version, overwrite=True,
        )
        rows.append((written, "SavedModel (TF Serving)", size_text(directories.directory_size(written)), "-"))
    if "tflite" in formats:
        for quantization in quantizations:
            suffix = "float32" if quantization == "none" else quantization
            target = os.path.join(args.output, f"{name}_{suffix}.tflite")
            export.export_tflite(
                model, target, quantization,
                representative_data=calibration if quantization == "int8" else None,
            )
            accuracy = percent(export.evaluate_tflite(target, *evaluation)) if args.evaluate else "-"
            rows.append((target, f"TFLite {suffix}", size_text(os.path.getsize(target)), accuracy))
            tflite_files[f"{name} {suffix}"] = target
    if "micro" in formats:
        bundle = export.export_micro(
            model, os.path.join(args.output, "micro"), name,
            representative_data=calibration,
            evaluation_data=evaluation if args.evaluate else None,
        )
        accuracy = "-" if bundle.accuracy is None else percent(bundle.accuracy)
        rows.append((
            os.path.dirname(bundle.source_path),
            f"TFLite Micro bundle, arena {bundle.arena_size:,} B",
            size_text(bundle.model_size), accuracy,
        ))
    return rows, tflite_files
