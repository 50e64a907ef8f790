"""`tf-asap train`: a baseline trained with the paper's recipe, and its rewind checkpoint."""

import contextlib
import os
import time

from tf_asap import defaults
from tf_asap.cli import datasets, directories
from tf_asap.cli.flags import (
    PROG,
    HelpFormatter,
    UsageError,
    add_data,
    add_debug,
    add_distribute,
    add_verbose,
    any_int,
    non_negative_int,
    positive_float,
    positive_int,
)
from tf_asap.cli.output import percent, say

DEFAULT_DATA = "fashion_mnist"


def add_parser(commands):
    """Adds `train` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "train", formatter_class=HelpFormatter,
        help="train a baseline with the paper's recipe and save its rewind checkpoint",
        description=(
            "Train a reference model from scratch with the paper's recipe (SGD, "
            "Nesterov momentum 0.9, weight decay 2e-4, learning rate decayed x0.1 at "
            "50% and 75% of training) and save the rewind checkpoint of epoch k "
            "(60% of training by default) for weight rewinding.\n\n"
            "Writes OUTPUT/baseline/model.keras, OUTPUT/baseline/rewind.npz and "
            "OUTPUT/train.json. A seeded --validation-split of the training data is "
            "held out for validation (the same images `tf-asap prune` holds out with "
            "the same seed); the test data is only evaluated."
        ),
    )
    parser.add_argument("--model", default="vgg_small",
                        help="a tf_asap.zoo model: small_cnn, vgg_small, resnet_small, "
                        "resnet20/32/56/110, vgg16, vgg19, mobilenet_v2")
    parser.add_argument("--epochs", type=positive_int, default=10, help="epochs of training (T)")
    parser.add_argument("--rewind-epoch", type=non_negative_int, default=None,
                        help="epoch k whose state is saved for rewinding (default: 60%% of --epochs)")
    parser.add_argument("--learning-rate", type=positive_float, default=None,
                        help="initial learning rate (default: 0.05 for 28x28 images, "
                        "the paper's 0.1 otherwise)")
    parser.add_argument("--image-size", type=positive_int, default=None, metavar="N",
                        help="resize images of a folder, .npz or tfds:NAME to NxN (default: "
                        "their own size; a folder's first image)")
    parser.add_argument("--seed", type=any_int, default=0,
                        help="random seed (initialisation, shuffling, the held-out split)")
    parser.add_argument("--output", required=True, help="directory to write the baseline to")
    parser.add_argument("--overwrite", action="store_true",
                        help="train again into an --output that already holds a baseline")
    add_data(parser, DEFAULT_DATA)
    add_verbose(parser)
    add_distribute(parser)
    add_debug(parser)
    parser.set_defaults(handler=run)


def _check(args):
    if args.rewind_epoch is not None and args.rewind_epoch >= args.epochs:
        raise UsageError(
            f"--rewind-epoch {args.rewind_epoch} must be below --epochs "
            f"{args.epochs}: rounds retrain from epoch k to the end. Omit it for "
            "the paper's 60% of training."
        )
    if os.path.exists(os.path.join(args.output, directories.TRAIN_SETTINGS)) and not args.overwrite:
        raise UsageError(
            f"--output {args.output} already holds a trained baseline. Choose "
            "a new --output, or pass --overwrite to train again."
        )


def run(args):
    """Trains the baseline; returns the exit code."""
    _check(args)
    spec = args.data or DEFAULT_DATA
    datasets.kind_of(spec)  # a usage error before TensorFlow starts
    import keras  # heavy: imported once the arguments are known good

    from tf_asap import distribute, recipe, zoo
    from tf_asap.rounds.controller import train_baseline

    strategy = distribute.strategy_from_name(args.distribute)
    keras.utils.set_random_seed(args.seed)
    image_size = None if args.image_size is None else (args.image_size, args.image_size)
    input_shape, num_classes, loaded = datasets.data_shape(spec, image_size)
    with strategy.scope():
        model = zoo.build_model(args.model, input_shape=input_shape, num_classes=num_classes)
    settings = _data_settings(args)
    data = datasets.load_for_model(model, spec, settings, loaded=loaded)
    steps = int(data.train.cardinality())
    learning_rate = args.learning_rate or datasets.default_learning_rate(input_shape)
    optimizer = recipe.paper_optimizer(args.epochs, steps, learning_rate=learning_rate)
    if args.overwrite:
        for name in (directories.TRAIN_SETTINGS, os.path.join("baseline", "baseline.json")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.output, name))
    say(
        f"Training {model.name} ({directories.plain_params(model):,} params) on "
        f"{data.description} for {args.epochs} epochs ({steps} steps each), learning rate "
        f"{learning_rate}, batch {settings['batch_size']}; {'; '.join(data.notes)}."
    )
    say(f"Validation: {data.validation_label}.")
    started = time.monotonic()
    baseline = train_baseline(
        model, data.train, data.validation, args.epochs, args.output,
        rewind_epoch=args.rewind_epoch, optimizer=optimizer, verbose=args.verbose,
        strategy=strategy,
    )
    seconds = time.monotonic() - started
    test_accuracy = datasets.accuracy(baseline.model, data.test) if data.test else None
    if distribute.is_chief(strategy):  # only the chief worker writes --output
        directories.write_json(os.path.join(args.output, directories.TRAIN_SETTINGS), {
            "command": directories.command_line(args.argv), "date": directories.today(),
            "dataset": spec, "model": args.model, "epochs": baseline.epochs,
            "rewind_epoch": baseline.rewind_epoch, "learning_rate": learning_rate,
            "steps_per_epoch": steps, "validation_accuracy": baseline.accuracy,
            "test_accuracy": test_accuracy, "params": directories.plain_params(baseline.model),
            "train_seconds": round(seconds, 1), "versions": directories.versions(), **settings,
        })
    tested = f", test accuracy {percent(test_accuracy)}" if test_accuracy is not None else ""
    say(
        f"Validation accuracy {percent(baseline.accuracy)}{tested} after {baseline.epochs} "
        f"epochs ({seconds / 60:.1f} min)."
    )
    say(f"Model:             {baseline.final_model_path}")
    say(f"Rewind checkpoint: {baseline.rewind_checkpoint} (epoch {baseline.rewind_epoch})")
    name = os.path.basename(os.path.normpath(args.output))
    say(f"Next: {PROG} prune {args.output} --run-dir runs/{name} --max-accuracy-drop 1%")
    return 0


def _data_settings(args):
    """The data flags, as `datasets.load_for_model` and `train.json` take them."""
    from tf_asap.data import DEFAULT_BATCH_SIZE

    return {
        "validation_split": args.validation_split or defaults.VALIDATION_SPLIT,
        "test_data": args.test_data, "seed": args.seed,
        "batch_size": args.batch_size or DEFAULT_BATCH_SIZE, "limit": args.limit,
        "validation_limit": args.validation_limit, "test_limit": args.test_limit,
        "calibration_samples": None,
    }
