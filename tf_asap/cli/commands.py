"""The `tf-asap` command line: train, prune, export, profile, report, demo.

Every command is a thin layer over the Python API; what it adds is argument
parsing, defaults read from the directories earlier commands wrote, quiet
output and exit codes:

- `0` success;
- `2` usage error: argparse's own, and our checks of flag values and of
  flags that contradict each other, with a message naming the flag and the
  fix;
- `1` failure: one line saying why (a data set that cannot be found, a run
  directory of another model...). `--debug` shows the traceback instead;
- `130` interrupted (Ctrl-C); a pruning run resumes with `--resume`.

TensorFlow and absl print start-up lines from C++ ("oneDNN custom operations
are on", "Could not find cuda drivers") that `TF_CPP_MIN_LOG_LEVEL` does not
silence. Unless `--debug` is given, the C-level stderr goes through a filter
that drops lines in the glog format and absl's pre-initialisation notice and
lets everything else through.

Heavy modules (TensorFlow, Keras, tf_asap's core) are imported inside the
commands, so `--help` and usage errors answer at once.

Directories the commands share:

- `tf-asap train --output DIR` writes `DIR/baseline/model.keras` (the
  trained model, with masks all on), `DIR/baseline/rewind.npz` (the rewind
  checkpoint of epoch k) and `DIR/train.json` (the data set, model and
  recipe used, the command, the accuracy and the date);
- `tf-asap prune DIR --run-dir RUN` reads them (data set, batch size,
  learning rate and epochs default to the training's) and writes the run
  directory of `tf_asap.rounds.controller.RoundController`, plus `RUN/prune.json`
  with its settings, so `tf-asap prune --resume --run-dir RUN` needs no other
  flag;
- `tf-asap export RUN` exports `RUN/final/slim.keras`.

This module sits on top of the library and is never imported by it.
"""

import argparse
import contextlib
import datetime
import json
import math
import os
import re
import shlex
import sys
import threading
import time
import traceback
import warnings

PROG = "tf-asap"

TRAIN_SETTINGS = "train.json"
PRUNE_SETTINGS = "prune.json"
BASELINE_MODEL = os.path.join("baseline", "model.keras")
REWIND_CHECKPOINT = os.path.join("baseline", "rewind.npz")
FINAL_MODEL = os.path.join("final", "model.keras")
SLIM_MODEL = os.path.join("final", "slim.keras")

CRITERIA = ("attention", "l1", "l2", "apoz", "random")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
DEFAULT_DEMO_BASELINE = os.path.join("saved_models", "fashion_mnist_cnn")

# Lines TensorFlow, absl and XLA print from C++ that tell a user nothing:
# glog-format lines ("I0000 00:00:1795263358.389808   12269 port.cc:153] ..."),
# absl's notice before its logging is initialised, and the continuation of
# the CPU-instructions notice.
_NATIVE_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IWEF]\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ \S+:\d+\] "
    # The second line of cpu_feature_guard's message.
    r"|To enable the following instructions: .* rebuild TensorFlow with the"
    r" appropriate compiler flags\.$)"
)


class UsageError(Exception):
    """A flag value or combination the command cannot work with (exit code 2)."""


# ---------------------------------------------------------------------------
# Output hygiene


class _NativeStderrFilter:
    """Routes file descriptor 2 through a thread that drops `_NATIVE_NOISE` lines.

    C++ code writes to the file descriptor directly, so filtering
    `sys.stderr` is not enough. Python's own stderr writes pass through the
    same pipe and come out unchanged.
    """

    def __init__(self):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        self._original = os.dup(2)
        read_end, write_end = os.pipe()
        os.dup2(write_end, 2)
        os.close(write_end)
        self._thread = threading.Thread(
            target=self._pump, args=(read_end,), name="tf-asap-stderr", daemon=True
        )
        self._thread.start()

    def _pump(self, read_end):
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not _NATIVE_NOISE.match(line.decode("utf-8", "replace")):
                    os.write(self._original, line)

    def close(self):
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        # Pointing fd 2 back at the terminal closes the pipe's last write end
        # (unless a child process still holds it), which ends the thread.
        os.dup2(self._original, 2)
        self._thread.join(timeout=2.0)
        os.close(self._original)


def _quiet_python_logs():
    """Silences Python-level notices that are about TensorFlow, not the user."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # A tf.data dataset is shuffled by its pipeline; Keras still warns that
    # fit's own shuffle=True does not apply to it.
    warnings.filterwarnings("ignore", message=r".*`shuffle=True` was passed")
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    import logging

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    logging.getLogger("absl").setLevel(logging.ERROR)


# ---------------------------------------------------------------------------
# Argument types


def fraction(text):
    """Parses "0.5%" as 0.005, "70%" as 0.7 and "0.005" as 0.005.

    Raises:
        argparse.ArgumentTypeError: For anything that is not a fraction in
            [0, 1) or a percent in [0%, 100%).
    """
    raw = str(text).strip()
    percent = raw.endswith("%")
    try:
        number = float(raw[:-1] if percent else raw)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a fraction like 0.005 or a percent like 0.5%; received {text!r}"
        ) from None
    value = number / 100.0 if percent else number
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(
            f"must be at least 0 (a fraction like 0.005 or a percent like 0.5%); "
            f"received {text!r}"
        )
    if value >= 1:
        hint = f"; did you mean {raw}%?" if not percent and number < 100 else ""
        raise argparse.ArgumentTypeError(
            f"must be below 1 (100%); received {text!r}{hint}"
        )
    return value


def _int_at_least(minimum, expected):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {expected}; received {text!r}"
            ) from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}; received {text!r}")
        return value

    return parse


positive_int = _int_at_least(1, "a positive integer")
positive_int.__doc__ = "Parses an integer >= 1."
non_negative_int = _int_at_least(0, "an integer >= 0")
non_negative_int.__doc__ = "Parses an integer >= 0."


def positive_float(text):
    """Parses a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number; received {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0; received {text!r}")
    return value


# ---------------------------------------------------------------------------
# Small helpers


def _say(text=""):
    print(text, flush=True)


def _read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _write_json(path, value):
    """Writes JSON atomically (temporary file, then rename)."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, sort_keys=True)
        file.write("\n")
    os.replace(temporary, path)


def _command_line(argv):
    return " ".join(shlex.quote(part) for part in [PROG, *argv])


def _today():
    return datetime.date.today().isoformat()


def _directory_size(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def _bytes(size):
    for unit, scale in (("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.2f} {unit}"
    return f"{size} B"


def _count(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{unit}"
    return f"{value}"


def _table(rows, align=None):
    """A fixed-width text table; the first row is the header."""
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    align = align or ["<"] + [">"] * (len(widths) - 1)
    lines = []
    for index, row in enumerate(rows):
        cells = [f"{str(cell):{a}{w}}" for cell, a, w in zip(row, align, widths)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("-" * len(lines[0]))
    return "\n".join(lines)


def _existing_path(path, flag):
    if not os.path.exists(path):
        raise UsageError(f"{flag}: '{path}' does not exist. Check the path.")
    return path


def _train_settings(directory):
    path = os.path.join(directory, TRAIN_SETTINGS)
    return _read_json(path) if os.path.isfile(path) else {}


def _load_model(path):
    """Loads a `.keras` model with tf_asap's layers and recipe registered (safe mode on)."""
    import keras

    import tf_asap  # noqa: F401  (registers MaskedLayer)
    import tf_asap.recipe  # noqa: F401  (registers the recipe's optimizer and schedule)

    return keras.models.load_model(path)


def _is_prunable(model):
    from tf_asap.core.masks import is_prunable_model

    return is_prunable_model(model)


def _deployable(model):
    """A plain Keras model: masked models are slimmed, plain ones kept."""
    if _is_prunable(model):
        import tf_asap

        return tf_asap.slim(model)
    return model


def _check_dataset_matches(model, dataset, flag="--dataset"):
    from tf_asap import data

    info = data.dataset_info(dataset)
    expected = tuple(model.inputs[0].shape[1:])
    if tuple(info.input_shape) != expected:
        raise UsageError(
            f"{flag} {info.name} gives images of shape {info.input_shape} but "
            f"model '{model.name}' expects {expected}. Pass the data set the "
            "model was trained on."
        )
    outputs = model.outputs[0].shape[-1]
    if outputs is not None and outputs != info.num_classes:
        raise UsageError(
            f"{flag} {info.name} has {info.num_classes} classes but model "
            f"'{model.name}' has {outputs} outputs. Pass the data set the model "
            "was trained on."
        )
    return info


def _default_learning_rate(dataset):
    # The recipe's advice for short CPU runs of the 28x28 models; the paper's
    # 0.1 elsewhere (tf_asap.recipe, "Small CPU budgets").
    from tf_asap import data, recipe

    if data.dataset_info(dataset).input_shape[:2] == (28, 28):
        return 0.05
    return recipe.PAPER_LEARNING_RATE


# ---------------------------------------------------------------------------
# train


def _train(args):
    if args.rewind_epoch is not None and args.rewind_epoch >= args.epochs:
        raise UsageError(
            f"--rewind-epoch {args.rewind_epoch} must be below --epochs "
            f"{args.epochs}: rounds retrain from epoch k to the end. Omit it for "
            "the paper's 60% of training."
        )
    if os.path.exists(os.path.join(args.output, TRAIN_SETTINGS)) and not args.overwrite:
        raise UsageError(
            f"--output {args.output} already holds a trained baseline. Choose "
            "a new --output, or pass --overwrite to train again."
        )
    import keras

    from tf_asap import controller, data, recipe, zoo

    keras.utils.set_random_seed(args.seed)
    info = data.dataset_info(args.dataset)
    model = zoo.build_model(
        args.model, input_shape=info.input_shape, num_classes=info.num_classes
    )
    train = data.load_dataset(
        info.name, "train", batch_size=args.batch_size, limit=args.limit, seed=args.seed
    )
    validation = data.load_dataset(
        info.name, "test", batch_size=args.batch_size, limit=args.validation_limit
    )
    steps = int(train.cardinality())
    learning_rate = (
        args.learning_rate if args.learning_rate is not None
        else _default_learning_rate(info.name)
    )
    optimizer = recipe.paper_optimizer(args.epochs, steps, learning_rate=learning_rate)
    if args.overwrite:
        for name in (TRAIN_SETTINGS, os.path.join("baseline", "baseline.json")):
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(args.output, name))
    _say(
        f"Training {model.name} ({_plain_params(model):,} params) on {info.name} "
        f"for {args.epochs} epochs ({steps} steps each), learning rate "
        f"{learning_rate}, batch {args.batch_size}."
    )
    started = time.monotonic()
    baseline = controller.train_baseline(
        model, train, validation, args.epochs, args.output,
        rewind_epoch=args.rewind_epoch, optimizer=optimizer, verbose=args.verbose,
    )
    seconds = time.monotonic() - started
    settings = {
        "command": _command_line(args.argv),
        "date": _today(),
        "dataset": info.name,
        "model": args.model,
        "epochs": baseline.epochs,
        "rewind_epoch": baseline.rewind_epoch,
        "batch_size": args.batch_size,
        "learning_rate": learning_rate,
        "limit": args.limit,
        "validation_limit": args.validation_limit,
        "seed": args.seed,
        "steps_per_epoch": steps,
        "test_accuracy": baseline.accuracy,
        "params": _plain_params(baseline.model),
        "train_seconds": round(seconds, 1),
        "versions": _versions(),
    }
    _write_json(os.path.join(args.output, TRAIN_SETTINGS), settings)
    _say(
        f"Test accuracy {100 * baseline.accuracy:.2f}% after {baseline.epochs} "
        f"epochs ({seconds / 60:.1f} min)."
    )
    _say(f"Model:             {baseline.final_model_path}")
    _say(f"Rewind checkpoint: {baseline.rewind_checkpoint} (epoch {baseline.rewind_epoch})")
    _say(f"Next: {PROG} prune {args.output} --run-dir runs/{os.path.basename(os.path.normpath(args.output))} --max-accuracy-drop 1%")
    return 0


def _plain_params(model):
    import tf_asap

    return int(tf_asap.count_cost(model).params)  # masks are not parameters


def _versions():
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}


# ---------------------------------------------------------------------------
# prune

# Flags of `prune` that a resumed run takes from RUN_DIR/prune.json when they
# are not given again. None means "not given" on the command line.
_PRUNE_KEYS = (
    "model", "dataset", "max_accuracy_drop", "params_reduction",
    "flops_reduction", "minimize", "criterion", "rewind", "rewind_checkpoint",
    "epochs", "epochs_per_round", "learning_rate", "batch_size", "limit",
    "validation_limit", "calibration_samples", "max_rounds", "step",
    "tolerance", "patience", "seed", "step_growth",
)


def _resolve_prune_settings(args):
    """Merges the command line, a resumed run's saved flags and the training's."""
    settings = {key: getattr(args, key, None) for key in _PRUNE_KEYS}
    saved_path = os.path.join(args.run_dir, PRUNE_SETTINGS)
    manifest = os.path.join(args.run_dir, "run.json")
    if os.path.exists(manifest) or os.path.exists(saved_path):
        if not args.resume:
            raise UsageError(
                f"--run-dir {args.run_dir} already holds a pruning run. Pass "
                "--resume to continue it (or to see its result), or choose a "
                "new --run-dir."
            )
        if os.path.isfile(saved_path):
            saved = _read_json(saved_path)
            for key, value in saved.items():
                if key in settings and settings[key] is None:
                    settings[key] = value
    targets = [
        flag for flag, key in (
            ("--max-accuracy-drop", "max_accuracy_drop"),
            ("--params-reduction", "params_reduction"),
            ("--flops-reduction", "flops_reduction"),
        ) if settings[key] is not None
    ]
    if not targets:
        raise UsageError(
            "give the pruning target: --max-accuracy-drop 0.5% (accuracy-guaranteed), "
            "--params-reduction 70% (memory-constrained) or --flops-reduction 50% "
            "(FLOPs-constrained)."
        )
    if len(targets) > 1:
        raise UsageError(
            f"{' and '.join(targets)} are different policies; give only one of them."
        )
    if settings["model"] is None:
        raise UsageError(
            "give the model to prune: a directory written by `tf-asap train` or "
            "a .keras file (or --resume --run-dir of an earlier run)."
        )
    if settings["minimize"] is not None and settings["max_accuracy_drop"] is None:
        raise UsageError(
            "--minimize applies to --max-accuracy-drop only: --params-reduction "
            "and --flops-reduction already say what to reduce."
        )
    if settings["tolerance"] is not None and settings["max_accuracy_drop"] is not None:
        raise UsageError(
            "--tolerance applies to --params-reduction and --flops-reduction only."
        )

    model = settings["model"]
    _existing_path(model, "MODEL")
    train_settings = {}
    if os.path.isdir(model):
        train_settings = _train_settings(model)
        model_path = os.path.join(model, BASELINE_MODEL)
        if not os.path.isfile(model_path):
            hint = (
                f" It looks like a pruning run directory: export its result with "
                f"`{PROG} export {model}`."
                if os.path.isfile(os.path.join(model, FINAL_MODEL)) else ""
            )
            raise UsageError(
                f"MODEL {model} is a directory without {BASELINE_MODEL}: pass a "
                f"directory written by `{PROG} train` or a .keras file.{hint}"
            )
        checkpoint = os.path.join(model, REWIND_CHECKPOINT)
        if settings["rewind_checkpoint"] is None and os.path.isfile(checkpoint):
            settings["rewind_checkpoint"] = checkpoint
    elif model.endswith(".keras"):
        model_path = model
    else:
        raise UsageError(
            f"MODEL {model} is neither a .keras file nor a directory written by "
            f"`{PROG} train`."
        )
    if settings["rewind_checkpoint"] is not None:
        _existing_path(settings["rewind_checkpoint"], "--rewind-checkpoint")
    if settings["rewind"] is None:
        settings["rewind"] = "weights" if settings["rewind_checkpoint"] else "lr"
    if settings["rewind"] == "weights" and not settings["rewind_checkpoint"]:
        raise UsageError(
            "--rewind weights needs the rewind checkpoint that `tf-asap train` "
            "saves: pass its output directory as MODEL, or --rewind-checkpoint "
            "PATH; or use --rewind lr (learning-rate rewinding, for any trained model)."
        )
    if settings["rewind"] == "lr":
        settings["rewind_checkpoint"] = None

    settings["dataset"] = settings["dataset"] or train_settings.get("dataset")
    if settings["dataset"] is None:
        raise UsageError(
            f"--dataset is needed: {model} does not say which data set it was "
            "trained on. Pass --dataset fashion_mnist (or mnist, cifar10, ...)."
        )
    for key in ("batch_size", "learning_rate"):
        if settings[key] is None:
            settings[key] = train_settings.get(key)
    settings["batch_size"] = settings["batch_size"] or 128
    if settings["epochs"] is None:
        settings["epochs"] = train_settings.get("epochs")
    settings["model_path"] = model_path
    return settings


def _rewind_epochs(settings):
    """(epochs, rewind_epoch) of the run, checked against the rewind checkpoint."""
    per_round = settings["epochs_per_round"]
    if settings["rewind"] == "weights":
        from tf_asap.rounds.controller import load_state

        _, metadata = load_state(settings["rewind_checkpoint"])
        epochs, rewind_epoch = metadata.get("epochs"), metadata.get("epoch")
        if epochs is None or rewind_epoch is None:
            raise UsageError(
                f"--rewind-checkpoint {settings['rewind_checkpoint']} does not say "
                "at which epoch of which training it was saved; pass a checkpoint "
                "written by `tf-asap train`, or use --rewind lr."
            )
        if settings["epochs"] is not None and settings["epochs"] != epochs:
            raise UsageError(
                f"--epochs {settings['epochs']} contradicts the rewind checkpoint, "
                f"saved during a {epochs}-epoch training. Omit --epochs, or use "
                "--rewind lr."
            )
        if per_round is not None and per_round != epochs - rewind_epoch:
            raise UsageError(
                f"--epochs-per-round {per_round} contradicts weight rewinding: "
                f"the checkpoint was saved at epoch {rewind_epoch} of {epochs}, so "
                f"every round retrains {epochs - rewind_epoch} epochs. Omit "
                "--epochs-per-round, or use --rewind lr to choose it."
            )
        return epochs, rewind_epoch
    epochs = settings["epochs"] or 10
    if per_round is None:
        per_round = max(1, epochs - round(0.6 * epochs))
    if per_round > epochs:
        raise UsageError(
            f"--epochs-per-round {per_round} is longer than the schedule "
            f"(--epochs {epochs}): learning-rate rewinding replays the last "
            "epochs of it. Give --epochs at least as large."
        )
    return epochs, epochs - per_round


def _policy(settings):
    from tf_asap import policies

    common = {}
    if settings["max_rounds"] is not None:
        common["max_rounds"] = settings["max_rounds"]
    if settings["step"] is not None:
        common["step"] = settings["step"]
    if settings["patience"] is not None:
        common["patience"] = settings["patience"]
    if settings.get("step_growth") is not None:
        common["step_growth"] = settings["step_growth"]
    if settings["max_accuracy_drop"] is not None:
        return policies.AccuracyGuaranteed(
            max_accuracy_drop=settings["max_accuracy_drop"],
            minimize=settings["minimize"] or "params",
            **common,
        )
    if settings["tolerance"] is not None:
        common["tolerance"] = settings["tolerance"]
    if settings["params_reduction"] is not None:
        return policies.ParamsTarget(reduction=settings["params_reduction"], **common)
    return policies.FlopsTarget(reduction=settings["flops_reduction"], **common)


def _run_pruning(settings, run_dir, verbose):
    """Runs (or resumes) a pruning run; returns (PruningResult, settings)."""
    import keras

    from tf_asap import data, recipe
    from tf_asap.rounds.controller import RoundController

    epochs, rewind_epoch = _rewind_epochs(settings)
    seed = settings["seed"] if settings["seed"] is not None else 0
    keras.utils.set_random_seed(seed)
    model = _load_model(settings["model_path"])
    info = _check_dataset_matches(model, settings["dataset"])
    batch_size = settings["batch_size"]
    train = data.load_dataset(
        info.name, "train", batch_size=batch_size, limit=settings["limit"], seed=seed
    )
    validation = data.load_dataset(
        info.name, "test", batch_size=batch_size, limit=settings["validation_limit"]
    )
    calibration_samples = settings["calibration_samples"] or 2048
    calibration = data.load_dataset(
        info.name, "train", batch_size=batch_size, shuffle=False, augment=False,
        limit=calibration_samples,
    )
    optimizer = None
    if settings["rewind"] == "lr":
        # Learning-rate rewinding (Renda et al., 2020): every round replays
        # the last epochs of the recipe's schedule, built for this run's
        # epoch length so that its decays fall where they should.
        learning_rate = settings["learning_rate"] or _default_learning_rate(info.name)
        settings["learning_rate"] = learning_rate
        optimizer = recipe.paper_optimizer(
            epochs, int(train.cardinality()), learning_rate=learning_rate
        )
    elif settings["limit"] is not None:
        from tf_asap.rounds.controller import load_state

        baseline_steps = load_state(settings["rewind_checkpoint"])[1].get("steps_per_epoch")
        steps = int(train.cardinality())
        if baseline_steps and baseline_steps != steps:
            # The rewound schedule counts optimizer steps of the full training.
            _say(
                f"Note: the baseline's learning-rate schedule was built for "
                f"{baseline_steps} steps per epoch; with --limit an epoch has {steps}, so "
                "each round covers a shorter stretch of it. --rewind lr fits the "
                "schedule to --limit."
            )
    policy = _policy(settings)
    saved = {key: settings[key] for key in _PRUNE_KEYS}
    saved_path = os.path.join(run_dir, PRUNE_SETTINGS)
    # Written when the run starts, so that a crashed run resumes with
    # `--resume` alone; a resume with other flags must not replace it before
    # the controller has accepted them (it refuses other settings).
    if not os.path.exists(saved_path):
        _write_json(saved_path, saved)
    controller = RoundController(
        model, policy, train, validation, run_dir=run_dir, epochs=epochs,
        rewind_epoch=rewind_epoch, rewind_checkpoint=settings["rewind_checkpoint"],
        calibration_data=calibration, criterion=settings["criterion"] or "attention",
        optimizer=optimizer, verbose=verbose,
    )
    _say(
        f"Pruning {model.name} on {info.name}: {_describe_policy(settings)}, "
        f"criterion {settings['criterion'] or 'attention'}, {settings['rewind']} "
        f"rewinding to epoch {rewind_epoch} of {epochs} ({epochs - rewind_epoch} "
        f"epoch(s) of {int(train.cardinality())} steps per round). Run directory: {run_dir}"
    )
    result = controller.run()
    _write_json(saved_path, saved)
    return result


def _describe_policy(settings):
    if settings["max_accuracy_drop"] is not None:
        return (
            f"accuracy drop <= {100 * settings['max_accuracy_drop']:g}%, minimizing "
            f"{settings['minimize'] or 'params'}"
        )
    if settings["params_reduction"] is not None:
        return f"params reduction {100 * settings['params_reduction']:g}%"
    return f"FLOPs reduction {100 * settings['flops_reduction']:g}%"


def _result_lines(result):
    baseline = result.rounds[0]
    best = result.best
    return [
        f"Best round {result.best_round}: accuracy {100 * baseline['accuracy']:.2f}% -> "
        f"{100 * best['accuracy']:.2f}%, params -{100 * best['params_reduction']:.1f}%, "
        f"FLOPs -{100 * best['flops_reduction']:.1f}% ({len(result.rounds) - 1} rounds).",
        f"Stopped: {result.rounds[-1].get('reason', '')}",
        f"Masked model: {os.path.join(result.run_dir, FINAL_MODEL)}",
        f"Slim model:   {os.path.join(result.run_dir, SLIM_MODEL)}",
        f"Report:       {os.path.join(result.run_dir, 'report.md')}",
    ]


def _prune(args):
    settings = _resolve_prune_settings(args)
    result = _run_pruning(settings, args.run_dir, args.verbose)
    for line in _result_lines(result):
        _say(line)
    _say(f"Next: {PROG} export {args.run_dir} --output {os.path.join(args.run_dir, 'export')}")
    return 0


# ---------------------------------------------------------------------------
# export


def _model_to_export(path):
    """(.keras path, data set or None) for a file, a run or a training directory."""
    _existing_path(path, "MODEL")
    if os.path.isdir(path):
        for candidate in (SLIM_MODEL, BASELINE_MODEL):
            if os.path.isfile(os.path.join(path, candidate)):
                dataset = None
                with contextlib.suppress(OSError, ValueError):
                    if candidate == SLIM_MODEL:
                        dataset = _read_json(os.path.join(path, PRUNE_SETTINGS)).get("dataset")
                    else:
                        dataset = _train_settings(path).get("dataset")
                return os.path.join(path, candidate), dataset
        raise UsageError(
            f"MODEL {path} is a directory without {SLIM_MODEL} (a finished "
            f"pruning run) or {BASELINE_MODEL} (a training): pass one of those "
            "or a .keras file."
        )
    if not path.endswith(".keras"):
        raise UsageError(f"MODEL {path} is not a .keras file.")
    return path, None


def _c_identifier(text):
    name = re.sub(r"\W", "_", text)
    return name if re.match(r"[A-Za-z_]", name) else f"model_{name}"


def _export(args):
    path, known_dataset = _model_to_export(args.model)
    dataset = args.dataset or known_dataset
    formats = set(args.format or ["saved_model", "tflite"])
    quantizations = list(dict.fromkeys(args.quantization or ["none"]))
    needs_data = "micro" in formats or args.evaluate or (
        "tflite" in formats and "int8" in quantizations
    )
    if needs_data and dataset is None:
        raise UsageError(
            "--dataset is needed for int8 calibration, --format micro and "
            f"--evaluate: {args.model} does not say which data set it was trained "
            "on. Pass --dataset fashion_mnist (or mnist, cifar10, ...)."
        )
    if args.latency and "tflite" not in formats:
        raise UsageError("--latency measures .tflite files: add --format tflite.")
    from tf_asap import export

    model = _deployable(_load_model(path))
    # Named after the run or training directory, or the .keras file.
    name = args.name or _c_identifier(
        os.path.basename(os.path.normpath(args.model)) if os.path.isdir(args.model)
        else os.path.splitext(os.path.basename(path))[0]
    )
    calibration = evaluation = None
    if needs_data:
        from tf_asap import data

        _check_dataset_matches(model, dataset)
        calibration, _ = data.load_arrays(dataset, "train", limit=args.calibration_samples)
        evaluation = data.load_arrays(dataset, "test", limit=args.evaluation_samples)
    os.makedirs(args.output, exist_ok=True)
    rows = [("file", "format", "size", "accuracy")]
    tflite_files = {}
    if "saved_model" in formats:
        written = export.export_saved_model(
            model, os.path.join(args.output, "saved_model"), name,
            version=args.model_version, overwrite=True,
        )
        rows.append((written, "SavedModel (TF Serving)", _bytes(_directory_size(written)), "-"))
    if "tflite" in formats:
        for quantization in quantizations:
            suffix = "float32" if quantization == "none" else quantization
            target = os.path.join(args.output, f"{name}_{suffix}.tflite")
            export.export_tflite(
                model, target, quantization,
                representative_data=calibration if quantization == "int8" else None,
            )
            accuracy = "-"
            if args.evaluate:
                accuracy = f"{100 * export.evaluate_tflite(target, *evaluation):.2f}%"
            rows.append((target, f"TFLite {suffix}", _bytes(os.path.getsize(target)), accuracy))
            tflite_files[f"{name} {suffix}"] = target
    if "micro" in formats:
        bundle = export.export_micro(
            model, os.path.join(args.output, "micro"), name,
            representative_data=calibration,
            evaluation_data=evaluation if args.evaluate else None,
        )
        accuracy = "-" if bundle.accuracy is None else f"{100 * bundle.accuracy:.2f}%"
        rows.append((
            os.path.dirname(bundle.source_path),
            f"TFLite Micro bundle, arena {bundle.arena_size:,} B",
            _bytes(bundle.model_size), accuracy,
        ))
    _say(_table(rows, ["<", "<", ">", ">"]))
    if args.evaluate:
        import numpy as np

        x, y = evaluation
        predictions = model.predict(x, batch_size=256, verbose=0)
        keras_accuracy = float(np.mean(np.argmax(predictions, axis=-1) == y))
        _say(f"Keras model accuracy on the same {len(y):,} test images: {100 * keras_accuracy:.2f}%")
    if args.latency:
        import tf_asap

        cost = tf_asap.count_cost(model)
        rows = export.latency_report(
            tflite_files, costs={key: cost for key in tflite_files},
            num_runs=args.latency_runs,
        )
        _say("")
        _say("Batch-1 LiteRT latency (1 thread):")
        _say(export.render_latency_table(rows))
    return 0


# ---------------------------------------------------------------------------
# profile


def _profile(args):
    path = args.model
    _existing_path(path, "MODEL")
    if os.path.isdir(path):
        for candidate in (FINAL_MODEL, BASELINE_MODEL):
            if os.path.isfile(os.path.join(path, candidate)):
                path = os.path.join(path, candidate)
                break
        else:
            raise UsageError(
                f"MODEL {args.model} is a directory without {FINAL_MODEL} or "
                f"{BASELINE_MODEL}: pass a .keras file."
            )
    import tf_asap

    model = _load_model(path)
    cost = tf_asap.count_cost(model)
    if args.json:
        _say(json.dumps({
            "model": path,
            "params": cost.params,
            "effective_params": cost.effective_params,
            "flops": cost.flops,
            "effective_flops": cost.effective_flops,
            "layers": [
                {
                    "name": layer.name, "type": layer.type, "params": layer.params,
                    "effective_params": layer.effective_params, "flops": layer.flops,
                    "effective_flops": layer.effective_flops,
                }
                for layer in cost.layers
            ],
        }, indent=2))
        return 0
    _say(f"{model.name} ({path})")
    _say(cost.to_table(only_weighted=not args.all_layers))
    _say(
        f"params {cost.params:,} -> {cost.effective_params:,} effective "
        f"({100 * cost.params_reduction:.1f}% removed); FLOPs per sample "
        f"{cost.flops:,} -> {cost.effective_flops:,} ({100 * cost.flops_reduction:.1f}% removed)"
    )
    return 0


# ---------------------------------------------------------------------------
# report


def _report(args):
    from tf_asap import report

    if not os.path.isdir(args.run_dir):
        raise UsageError(f"RUN_DIR {args.run_dir} is not a directory.")
    written = report.write_report(args.run_dir)
    plot = written["plot"]
    with open(written["report"], encoding="utf-8") as file:
        # The Markdown image link is for viewers of report.md, not a terminal.
        text = "\n".join(
            line for line in file.read().splitlines() if not line.startswith("![")
        )
    if args.plot:
        report.plot_rounds(report.read_rounds(args.run_dir), args.plot)
        plot = args.plot
    _say(text.rstrip())
    _say("")
    _say(f"Plot: {plot}" if plot else "No plot: install matplotlib (pip install tf_asap[plot]).")
    return 0


# ---------------------------------------------------------------------------
# demo: the main job


def _demo(args):
    baseline_dir = args.baseline
    if not os.path.isfile(os.path.join(baseline_dir, BASELINE_MODEL)):
        raise UsageError(
            f"--baseline {baseline_dir} has no {BASELINE_MODEL}. Run the demo from "
            f"the repository root (it ships {DEFAULT_DEMO_BASELINE}), or make a "
            f"baseline with `{PROG} train --output DIR` and pass --baseline DIR."
        )
    import numpy as np

    from tf_asap import export

    started = time.monotonic()
    settings = {key: None for key in _PRUNE_KEYS}
    settings.update(
        model=baseline_dir, max_accuracy_drop=args.max_accuracy_drop,
        rewind=args.rewind, epochs_per_round=args.epochs_per_round,
        epochs=args.epochs, limit=args.limit, max_rounds=args.max_rounds, step=args.step,
        calibration_samples=args.calibration_samples,
    )
    resume_args = argparse.Namespace(run_dir=args.run_dir, resume=True, **settings)
    settings = _resolve_prune_settings(resume_args)
    if os.path.exists(os.path.join(args.run_dir, "run.json")):
        _say(f"Continuing the run in {args.run_dir} (delete it to start over).")
    result = _run_pruning(settings, args.run_dir, args.verbose)
    prune_seconds = time.monotonic() - started

    from tf_asap import data
    import tf_asap

    _say("")
    _say("Exporting the baseline and the pruned model...")
    baseline = _deployable(_load_model(settings["model_path"]))
    pruned = result.slim_model
    name = _c_identifier(os.path.basename(os.path.normpath(baseline_dir)))
    out = os.path.join(args.run_dir, "export")
    calibration, _ = data.load_arrays(settings["dataset"], "train", limit=200)
    x_test, y_test = data.load_arrays(settings["dataset"], "test")
    models = {"baseline": baseline, "pruned": pruned}
    figures = {}
    for label, model in models.items():
        model_name = name if label == "pruned" else f"{name}_baseline"
        saved_model = export.export_saved_model(
            model, os.path.join(out, "saved_model"), model_name, overwrite=True
        )
        tflite = export.export_tflite(
            model, os.path.join(out, f"{model_name}_int8.tflite"), "int8",
            representative_data=calibration,
        )
        cost = tf_asap.count_cost(model)
        predictions = model.predict(x_test, batch_size=500, verbose=0)
        figures[label] = {
            "accuracy": float(np.mean(np.argmax(predictions, axis=-1) == y_test)),
            "int8_accuracy": export.evaluate_tflite(tflite, x_test, y_test),
            "params": cost.params,
            "flops": cost.flops,
            "saved_model": saved_model,
            "saved_model_size": _directory_size(saved_model),
            "tflite": tflite,
            "tflite_size": os.path.getsize(tflite),
        }
    latency = export.latency_report(
        {label: figures[label]["tflite"] for label in models},
        costs={label: (figures[label]["params"], figures[label]["flops"]) for label in models},
        num_runs=args.latency_runs,
    )
    for row in latency:
        figures[row.name]["latency_ms"] = row.latency_ms
    total_seconds = time.monotonic() - started

    base, small = figures["baseline"], figures["pruned"]

    def ratio(key):
        return f"{base[key] / small[key]:.2f}x smaller" if small[key] else "-"

    rows = [
        ("", "baseline", "pruned", "change"),
        ("accuracy (Keras, float32)", f"{100 * base['accuracy']:.2f}%",
         f"{100 * small['accuracy']:.2f}%",
         f"{100 * (small['accuracy'] - base['accuracy']):+.2f} pts"),
        ("accuracy (LiteRT, int8)", f"{100 * base['int8_accuracy']:.2f}%",
         f"{100 * small['int8_accuracy']:.2f}%",
         f"{100 * (small['int8_accuracy'] - base['int8_accuracy']):+.2f} pts"),
        ("params", f"{base['params']:,}", f"{small['params']:,}", ratio("params")),
        ("FLOPs per image", _count(base["flops"]), _count(small["flops"]), ratio("flops")),
        ("SavedModel size", _bytes(base["saved_model_size"]),
         _bytes(small["saved_model_size"]), ratio("saved_model_size")),
        ("int8 .tflite size", _bytes(base["tflite_size"]), _bytes(small["tflite_size"]),
         ratio("tflite_size")),
        ("batch-1 latency, int8 LiteRT", f"{base['latency_ms']:.3f} ms",
         f"{small['latency_ms']:.3f} ms",
         f"{base['latency_ms'] / small['latency_ms']:.2f}x faster"),
    ]
    _say("")
    _say(
        f"Summary: {settings['dataset']} test set ({len(y_test):,} images), "
        f"{_describe_policy(settings)}, best round {result.best_round} of "
        f"{len(result.rounds) - 1}."
    )
    _say(_table(rows))
    _say("")
    _say(f"Pruned SavedModel: {small['saved_model']}")
    _say(f"Pruned int8 TFLite: {small['tflite']}")
    _say(f"Round report: {os.path.join(args.run_dir, 'report.md')} (plot: rounds.png)")
    _say(
        f"Time: pruning {prune_seconds / 60:.1f} min, total {total_seconds / 60:.1f} min."
    )
    _write_json(os.path.join(out, "summary.json"), {
        "command": _command_line(args.argv), "date": _today(),
        "best_round": result.best_round, "rounds": len(result.rounds) - 1,
        "prune_seconds": round(prune_seconds, 1), "total_seconds": round(total_seconds, 1),
        "baseline": base, "pruned": small,
    })
    return 0


# ---------------------------------------------------------------------------
# The parser


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own; adds "(default: X)" to help."""

    def _fill_text(self, text, width, indent):
        import textwrap

        return "\n\n".join(
            textwrap.fill(" ".join(paragraph.split()), width, initial_indent=indent,
                          subsequent_indent=indent)
            for paragraph in text.split("\n\n")
        )

    def _get_help_string(self, action):
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _add_common(parser):
    parser.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS,
        help="show TensorFlow's log lines and full tracebacks",
    )


def _add_verbose(parser):
    parser.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=None,
        help="0 quiet, 1 progress bars, 2 one line per epoch (default: 1 on a "
        "terminal, 2 otherwise)",
    )


def _at_least_one(text):
    """argparse type: a finite number >= 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}") from None
    if not 1.0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number >= 1, got {text!r}")
    return value


def build_parser():
    """The `tf-asap` argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Adaptive activation-based structured pruning for Keras 3.",
        epilog=(
            "typical use:\n"
            f"  {PROG} train --dataset fashion_mnist --model vgg_small --epochs 10 --output baselines/fmnist\n"
            f"  {PROG} prune baselines/fmnist --max-accuracy-drop 0.5% --run-dir runs/fmnist\n"
            f"  {PROG} export runs/fmnist --output deploy --format saved_model tflite --quantization int8 --evaluate\n"
            f"  {PROG} report runs/fmnist\n"
            f"Run '{PROG} COMMAND --help' for a command's flags."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", dest="show_version",
                        help="print the version and exit")
    parser.add_argument(
        "--debug", action="store_true", default=False,
        help="show TensorFlow's log lines and full tracebacks",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    # train -----------------------------------------------------------------
    train = commands.add_parser(
        "train", formatter_class=_Formatter,
        help="train a baseline with the paper's recipe and save its rewind checkpoint",
        description=(
            "Train a reference model from scratch with the paper's recipe (SGD, "
            "Nesterov momentum 0.9, weight decay 2e-4, learning rate decayed x0.1 at "
            "50% and 75% of training) and save the rewind checkpoint of epoch k "
            "(60% of training by default) for weight rewinding.\n\n"
            "Writes OUTPUT/baseline/model.keras, OUTPUT/baseline/rewind.npz and "
            "OUTPUT/train.json. The test split is the validation set."
        ),
    )
    train.add_argument("--dataset", default="fashion_mnist",
                       help="fashion_mnist, mnist, cifar10, cifar100, imagenette, imagenet2012")
    train.add_argument("--model", default="vgg_small",
                       help="a tf_asap.zoo model: small_cnn, vgg_small, resnet_small, "
                       "resnet20/32/56/110, vgg16, vgg19, mobilenet_v2")
    train.add_argument("--epochs", type=positive_int, default=10, help="epochs of training (T)")
    train.add_argument("--rewind-epoch", type=non_negative_int, default=None,
                       help="epoch k whose state is saved for rewinding (default: 60%% of --epochs)")
    train.add_argument("--batch-size", type=positive_int, default=128, help="batch size")
    train.add_argument("--learning-rate", type=positive_float, default=None,
                       help="initial learning rate (default: 0.05 for 28x28 data sets, "
                       "the paper's 0.1 otherwise)")
    train.add_argument("--limit", type=positive_int, default=None,
                       help="train on the first N training images only")
    train.add_argument("--validation-limit", type=positive_int, default=None,
                       help="validate on the first N test images only")
    train.add_argument("--seed", type=int, default=0, help="random seed")
    train.add_argument("--output", required=True, help="directory to write the baseline to")
    train.add_argument("--overwrite", action="store_true",
                       help="train again into an --output that already holds a baseline")
    _add_verbose(train)
    _add_common(train)
    train.set_defaults(handler=_train)

    # prune -----------------------------------------------------------------
    prune = commands.add_parser(
        "prune", formatter_class=_Formatter,
        help="prune a trained model adaptively to an accuracy, params or FLOPs target",
        description=(
            "Prune a trained model round by round (Algorithm 1): score filters "
            "(activation attention by default), mask those under the layer-aware "
            "thresholds, rewind, retrain, evaluate on the test split, and let the "
            "policy raise the threshold, roll back or stop.\n\n"
            "Give exactly one target: --max-accuracy-drop (accuracy-guaranteed), "
            "--params-reduction (memory-constrained) or --flops-reduction "
            "(FLOPs-constrained). Targets take fractions (0.005) or percents (0.5%).\n\n"
            "Everything goes to --run-dir; after a crash or Ctrl-C, "
            "`tf-asap prune --resume --run-dir DIR` continues without losing a "
            "completed round. The result is RUN_DIR/final/slim.keras."
        ),
    )
    prune.add_argument("model", nargs="?", default=None, metavar="MODEL",
                       help="a directory written by `tf-asap train` (uses its rewind "
                       "checkpoint and settings) or a .keras file")
    prune.add_argument("--run-dir", required=True, help="run directory (created)")
    prune.add_argument("--resume", action="store_true",
                       help="continue the run in --run-dir; flags not given are taken from it")
    target = prune.add_argument_group("target (exactly one)")
    target.add_argument("--max-accuracy-drop", type=fraction, default=None,
                        help="largest accuracy drop, e.g. 0.5%% or 0.005")
    target.add_argument("--params-reduction", type=fraction, default=None,
                        help="fraction of parameters to remove, e.g. 70%%")
    target.add_argument("--flops-reduction", type=fraction, default=None,
                        help="fraction of FLOPs to remove, e.g. 50%%")
    target.add_argument("--minimize", choices=("params", "flops"), default=None,
                        help="with --max-accuracy-drop: what to minimize (default: params)")
    target.add_argument("--tolerance", type=fraction, default=None,
                        help="with a reduction target: how far beyond it still meets it (default: 3%%)")
    search = prune.add_argument_group("search")
    search.add_argument("--criterion", choices=CRITERIA, default=None,
                        help="filter importance (default: attention, the paper's)")
    search.add_argument("--max-rounds", type=positive_int, default=None,
                        help="last pruning round (default: 50)")
    search.add_argument("--step", type=positive_float, default=None,
                        help="initial threshold step λ in relative units (default: the policy's)")
    search.add_argument("--step-growth", type=_at_least_one, default=None,
                        help="multiply λ by this after every passing round that pruned, up "
                        "to --step (default: 1, the paper's: a halved λ stays halved)")
    search.add_argument("--patience", type=positive_int, default=None,
                        help="rounds of unchanged size that end the run (default: 3)")
    search.add_argument("--calibration-samples", type=positive_int, default=None,
                        help="training images the filters are scored on (default: 2048)")
    training = prune.add_argument_group("retraining")
    training.add_argument("--rewind", choices=("weights", "lr"), default=None,
                          help="weights: rewind weights and learning rate to epoch k (needs the "
                          "checkpoint of `tf-asap train`; the default when there is one); lr: "
                          "keep the weights, replay the last --epochs-per-round epochs of the "
                          "learning-rate schedule")
    training.add_argument("--rewind-checkpoint", default=None,
                          help="rewind checkpoint for a MODEL given as a .keras file")
    training.add_argument("--epochs-per-round", type=positive_int, default=None,
                          help="retraining epochs per round (with --rewind lr; weight rewinding "
                          "retrains from the checkpoint's epoch to the end)")
    training.add_argument("--epochs", type=positive_int, default=None,
                          help="length of the learning-rate schedule (default: the training's, or 10)")
    training.add_argument("--learning-rate", type=positive_float, default=None,
                          help="initial learning rate of the schedule, with --rewind lr "
                          "(default: the training's)")
    training.add_argument("--dataset", default=None,
                          help="data set (default: the one MODEL was trained on)")
    training.add_argument("--batch-size", type=positive_int, default=None,
                          help="batch size (default: the training's, or 128)")
    training.add_argument("--limit", type=positive_int, default=None,
                          help="retrain on the first N training images only (faster rounds)")
    training.add_argument("--validation-limit", type=positive_int, default=None,
                          help="evaluate on the first N test images only")
    training.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    _add_verbose(prune)
    _add_common(prune)
    prune.set_defaults(handler=_prune)

    # export ----------------------------------------------------------------
    export = commands.add_parser(
        "export", formatter_class=_Formatter,
        help="export a model as SavedModel, TFLite or a microcontroller bundle",
        description=(
            "Export a model for deployment. MODEL is a .keras file, a pruning run "
            "directory (its final/slim.keras) or a training directory (its "
            "baseline); masked models are slimmed first.\n\n"
            "Formats: saved_model (OUTPUT/saved_model/NAME/VERSION, the TF Serving "
            "layout, signature serving_default with keys input_0 / output_0), "
            "tflite (one file per --quantization), micro (int8 .tflite, C array, op "
            "resolver and tensor arena size under OUTPUT/micro). Inputs are the "
            "normalised images of the data set (see tf_asap.data)."
        ),
    )
    export.add_argument("model", metavar="MODEL", help=".keras file, run directory or training directory")
    export.add_argument("--output", required=True, help="output directory")
    export.add_argument("--format", nargs="+", choices=("saved_model", "tflite", "micro"),
                        default=None, help="what to write (default: saved_model tflite)")
    export.add_argument("--quantization", nargs="+", choices=QUANTIZATIONS, default=None,
                        help="TFLite modes: none (float32), float16, dynamic, int8 (full "
                        "integer, needs --dataset for calibration) (default: none)")
    export.add_argument("--dataset", default=None,
                        help="data set for calibration and --evaluate (default: the one the "
                        "run or training used)")
    export.add_argument("--name", default=None,
                        help="model name in paths and C identifiers (default: the name of "
                        "MODEL's directory or file)")
    export.add_argument("--version", type=positive_int, default=1, dest="model_version", metavar="N",
                        help="SavedModel version (TF Serving loads the highest; an existing "
                        "version directory is replaced)")
    export.add_argument("--evaluate", action="store_true",
                        help="measure the accuracy of the exported files on the test split")
    export.add_argument("--latency", action="store_true",
                        help="measure batch-1 LiteRT latency of the .tflite files")
    export.add_argument("--latency-runs", type=positive_int, default=200,
                        help="timed runs per model for --latency")
    export.add_argument("--calibration-samples", type=positive_int, default=200,
                        help="training images for int8 calibration")
    export.add_argument("--evaluation-samples", type=positive_int, default=None,
                        help="test images for --evaluate (default: all)")
    _add_common(export)
    export.set_defaults(handler=_export)

    # profile ---------------------------------------------------------------
    profile = commands.add_parser(
        "profile", formatter_class=_Formatter,
        help="per-layer params and FLOPs of a .keras model, dense and effective",
        description=(
            "Print the parameters and FLOPs of every layer with weights, as built "
            "(dense) and once masked channels are removed (effective). FLOPs are 2 x "
            "multiply-accumulates of one sample. MODEL is a .keras file, a run "
            "directory (its final masked model) or a training directory."
        ),
    )
    profile.add_argument("model", metavar="MODEL", help=".keras file or directory")
    profile.add_argument("--all-layers", action="store_true",
                         help="list layers without weights too")
    profile.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _add_common(profile)
    profile.set_defaults(handler=_profile)

    # report ----------------------------------------------------------------
    report = commands.add_parser(
        "report", formatter_class=_Formatter,
        help="round table and plot (the paper's Figure 4) of a pruning run",
        description=(
            "Print the round table of a run directory (round, threshold, accuracy "
            "drop, params and FLOPs left, decision) and write the plot of accuracy "
            "drop and reduction per round. Works on unfinished runs too."
        ),
    )
    report.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `tf-asap prune`")
    report.add_argument("--plot", default=None,
                        help="also write the plot here (RUN_DIR/report.md and RUN_DIR/rounds.png "
                        "are always written)")
    _add_common(report)
    report.set_defaults(handler=_report)

    # demo ------------------------------------------------------------------
    demo = commands.add_parser(
        "demo", formatter_class=_Formatter,
        help="the main job: prune the shipped Fashion-MNIST baseline, export, summarize",
        description=(
            "Prune the shipped Fashion-MNIST baseline with the accuracy-guaranteed "
            "policy, export the baseline and the pruned model as SavedModel and "
            "int8 TFLite, and print accuracy (Keras and int8 LiteRT), params, FLOPs, "
            "file sizes and batch-1 LiteRT latency side by side. The defaults keep "
            "it within 15 minutes on 2 CPU cores (learning-rate rewinding on a "
            "training subset). Re-running with the same --run-dir resumes."
        ),
    )
    demo.add_argument("--baseline", default=DEFAULT_DEMO_BASELINE,
                      help="directory written by `tf-asap train`")
    demo.add_argument("--run-dir", default=os.path.join("runs", "main_job"), help="run directory")
    demo.add_argument("--max-accuracy-drop", type=fraction, default=0.01,
                      help="largest accuracy drop (fraction or percent)")
    demo.add_argument("--rewind", choices=("weights", "lr"), default="lr", help="rewinding")
    demo.add_argument("--epochs-per-round", type=positive_int, default=2,
                      help="retraining epochs per round (with --rewind lr)")
    demo.add_argument("--epochs", type=positive_int, default=4,
                      help="length of the learning-rate schedule whose last --epochs-per-round "
                      "epochs each round replays, with --rewind lr (4 and 2: one epoch at "
                      "0.1x and one at 0.01x the training's initial learning rate)")
    demo.add_argument("--limit", type=positive_int, default=8000,
                      help="training images used for retraining")
    demo.add_argument("--max-rounds", type=positive_int, default=15, help="last pruning round")
    demo.add_argument("--step", type=positive_float, default=0.2,
                      help="initial threshold step λ (relative units)")
    demo.add_argument("--calibration-samples", type=positive_int, default=1024,
                      help="training images the filters are scored on")
    demo.add_argument("--latency-runs", type=positive_int, default=300,
                      help="timed batch-1 runs per model")
    _add_verbose(demo)
    _add_common(demo)
    demo.set_defaults(handler=_demo)
    return parser


def _version():
    try:
        from importlib.metadata import version

        return version("tf_asap")
    except Exception:  # noqa: BLE001 - not installed: the source tree's version
        return "unknown"


def _one_line(error):
    text = str(error).strip() or type(error).__name__
    first = text.splitlines()[0]
    if first != text:
        first += " (run with --debug for the full message)"
    return first


def main(argv=None):
    """Runs the command line; returns the exit code.

    Args:
        argv: Arguments without the program name. Defaults to `None`:
            `sys.argv[1:]`.

    Returns:
        `0` on success, `1` on failure, `2` on a usage error, `130` when
        interrupted.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)  # exits with 2 on argparse's usage errors
    args.argv = argv
    if args.show_version:
        _say(f"{PROG} {_version()}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    if getattr(args, "verbose", 0) is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    stderr_filter = None
    if not args.debug:
        _quiet_python_logs()
        stderr_filter = _NativeStderrFilter()
    try:
        return args.handler(args)
    except UsageError as error:
        subparser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = ""
        if args.command in ("prune", "demo"):
            hint = f"; run again with --resume --run-dir {args.run_dir} to continue" \
                if args.command == "prune" else "; run it again to continue"
        print(f"{PROG} {args.command}: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - the one place failures become exit code 1
        if args.debug:
            traceback.print_exc()
        # tf_asap's own errors already say what is wrong; others get their type.
        ours = any(cls.__module__ == "tf_asap.errors" for cls in type(error).__mro__)
        kind = "" if ours else f"{type(error).__name__}: "
        print(f"{PROG} {args.command}: error: {kind}{_one_line(error)}", file=sys.stderr)
        return 1
    finally:
        if stderr_filter is not None:
            sys.stdout.flush()
            stderr_filter.close()


if __name__ == "__main__":
    sys.exit(main())
