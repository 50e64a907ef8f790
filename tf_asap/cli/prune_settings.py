"""The settings of a pruning run: flags, a resumed run's saved flags, the training's.

`resolve` merges, in this order of precedence, the command line, the
`prune.json` of the run being resumed and the `train.json` of the training
directory, and checks the combination; `rewind_epochs` checks the schedule
against the rewind checkpoint; `make_policy` builds the policy. Nothing here
imports TensorFlow except `rewind_epochs` reading a checkpoint.
"""

import os

from tf_asap.cli import directories
from tf_asap.cli.flags import PROG, UsageError

# Flags of `prune` that a resumed run takes from RUN_DIR/prune.json when they
# are not given again. None means "not given" on the command line.
KEYS = (
    "model", "dataset", "max_accuracy_drop", "params_reduction",
    "flops_reduction", "minimize", "criterion", "rewind", "rewind_checkpoint",
    "epochs", "epochs_per_round", "learning_rate", "batch_size", "limit",
    "validation_limit", "calibration_samples", "max_rounds", "step",
    "tolerance", "patience", "seed", "step_growth", "validation_split",
    "test_data", "test_limit", "metric", "mode", "schedule", "max_fraction", "size_tolerance",
    "scan_samples", "round_to",
    "early_rejection", "retrain", "distill", "distill_alpha", "distill_temperature",
    "final_epochs", "final_max_drop",
)
# Taken from the training's train.json when not given: the same data (and test data), batch,
# schedule, and the same seed and split, so that the images held out for
# decisions are those the baseline's training held out too.
_FROM_TRAINING = (
    "dataset", "batch_size", "learning_rate", "epochs", "seed", "validation_split", "test_data",
)
_TARGETS = (
    ("--max-accuracy-drop", "max_accuracy_drop"),
    ("--params-reduction", "params_reduction"),
    ("--flops-reduction", "flops_reduction"),
)


def from_args(args):
    """The settings given on the command line (`None` where a flag was not given)."""
    settings = {key: getattr(args, key, None) for key in KEYS}
    settings["dataset"] = getattr(args, "data", None)
    return settings


def resolve(settings, run_dir, resume):
    """Completes `settings` from the resumed run and the training; checks them.

    Returns:
        The settings, with `model_path` added.

    Raises:
        UsageError: for a missing or contradictory target, a missing model or
            data, an existing run without `--resume`, weight rewinding
            without a checkpoint.
    """
    saved_path = os.path.join(run_dir, directories.PRUNE_SETTINGS)
    if os.path.exists(os.path.join(run_dir, directories.RUN_MANIFEST)) or os.path.exists(saved_path):
        if not resume:
            raise UsageError(
                f"--run-dir {run_dir} already holds a pruning run. Pass --resume to "
                "continue it (or to see its result), or choose a new --run-dir."
            )
        if os.path.isfile(saved_path):
            for key, value in directories.read_json(saved_path).items():
                if key in settings and settings[key] is None:
                    settings[key] = value
    _check_target(settings)
    model_path, train_settings = _model_path(settings)
    _check_rewind(settings)
    for key in _FROM_TRAINING:
        if settings[key] is None:
            settings[key] = train_settings.get(key)
    if settings["dataset"] is None:
        raise UsageError(
            f"--data is needed: {settings['model']} does not say which data it was "
            "trained on. Pass --data DIR (one sub-folder per class), FILE.npz, "
            "tfds:NAME or a named set such as fashion_mnist."
        )
    settings["batch_size"] = settings["batch_size"] or 128
    settings["seed"] = settings["seed"] if settings["seed"] is not None else 0
    settings["model_path"] = model_path
    return settings


def _check_target(settings):
    targets = [flag for flag, key in _TARGETS if settings[key] is not None]
    if not targets:
        raise UsageError(
            "give the pruning target: --max-accuracy-drop 0.5% (accuracy-guaranteed), "
            "--params-reduction 70% (memory-constrained) or --flops-reduction 50% "
            "(FLOPs-constrained)."
        )
    if len(targets) > 1:
        raise UsageError(f"{' and '.join(targets)} are different policies; give only one of them.")
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
        raise UsageError("--tolerance applies to --params-reduction and --flops-reduction only.")
    for flag, key in (("--distill-alpha", "distill_alpha"), ("--distill-temperature", "distill_temperature")):
        if settings.get(key) is not None and not settings.get("distill"):
            raise UsageError(f"{flag} sets up distillation: give --distill too.")
    if settings.get("final_max_drop") not in (None, "none") and not settings.get("final_epochs"):
        raise UsageError(
            "--final-max-drop judges the fine-tuned model: give --final-epochs N (N >= 1) too."
        )
    if settings.get("mode") is not None and settings.get("metric") is None:
        raise UsageError(
            "--mode says which way --metric improves: give --metric NAME too (e.g. "
            "--metric auc --mode max, --metric mae --mode min)."
        )


def _model_path(settings):
    """The `.keras` file to prune and the training's settings (`{}` for a file)."""
    model = directories.existing_path(settings["model"], "MODEL")
    if model.endswith(".keras") and not os.path.isdir(model):
        return model, {}
    if not os.path.isdir(model):
        raise UsageError(
            f"MODEL {model} is neither a .keras file nor a directory written by `{PROG} train`."
        )
    model_path = os.path.join(model, directories.BASELINE_MODEL)
    if not os.path.isfile(model_path):
        hint = (
            f" It looks like a pruning run directory: export its result with "
            f"`{PROG} export {model}`."
            if os.path.isfile(os.path.join(model, directories.FINAL_MODEL)) else ""
        )
        raise UsageError(
            f"MODEL {model} is a directory without {directories.BASELINE_MODEL}: pass a "
            f"directory written by `{PROG} train` or a .keras file.{hint}"
        )
    checkpoint = os.path.join(model, directories.REWIND_CHECKPOINT)
    if settings["rewind_checkpoint"] is None and os.path.isfile(checkpoint):
        settings["rewind_checkpoint"] = checkpoint
    return model_path, directories.train_settings(model)


def _check_rewind(settings):
    if settings["rewind_checkpoint"] is not None:
        directories.existing_path(settings["rewind_checkpoint"], "--rewind-checkpoint")
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


def rewind_epochs(settings):
    """`(epochs, rewind_epoch)` of the run, checked against the rewind checkpoint."""
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


def make_policy(settings):
    """The policy the settings ask for."""
    from tf_asap.pruning import policies

    common = {
        key: settings[key]
        for key in ("max_rounds", "step", "patience", "step_growth", "metric", "mode", "schedule")
        if settings.get(key) is not None
    }
    if settings["max_accuracy_drop"] is not None:
        policy_class = policies.AccuracyGuaranteed
        common.update(
            max_accuracy_drop=settings["max_accuracy_drop"], minimize=settings["minimize"] or "params"
        )
    else:
        if settings["tolerance"] is not None:
            common["tolerance"] = settings["tolerance"]
        if settings["params_reduction"] is not None:
            policy_class, common["reduction"] = policies.ParamsTarget, settings["params_reduction"]
        else:
            policy_class, common["reduction"] = policies.FlopsTarget, settings["flops_reduction"]
    if settings.get("size_tolerance") is not None:
        common["size_tolerance"] = None if settings["size_tolerance"] == "none" else settings["size_tolerance"]
    _check_metric_support(policy_class, common)
    return policy_class(**common)


def engine_options(settings):
    """`RoundController` keyword arguments from the search and retraining flags.

    Flags not given keep the controller's defaults; `--max-fraction none`
    is the paper's rule (`max_fraction=None`).
    """
    options = {}
    if settings.get("max_fraction") is not None:
        options["max_fraction"] = None if settings["max_fraction"] == "none" else settings["max_fraction"]
    for key in ("scan_samples", "early_rejection", "retrain", "final_epochs", "final_max_drop", "round_to"):
        if settings.get(key) is not None:
            options[key] = None if settings[key] == "none" else settings[key]
    if settings.get("distill"):
        options["distillation"] = {
            key: settings[f"distill_{key}"] for key in ("alpha", "temperature")
            if settings.get(f"distill_{key}") is not None
        }
    return options


def _check_metric_support(policy_class, arguments):
    """A usage error when --metric/--mode reach a policy that does not take them."""
    import inspect

    accepted = inspect.signature(policy_class).parameters
    for key in ("metric", "mode"):
        if key in arguments and key not in accepted:
            raise UsageError(
                f"--{key} is not supported by {policy_class.__name__} in this version of "
                f"tf_asap (it takes no `{key}` argument). Omit --{key}: the policy measures "
                "accuracy."
            )


def describe_policy(settings):
    """The target in words, for the user."""
    if settings["max_accuracy_drop"] is not None:
        metric = settings.get("metric") or "accuracy"
        return (
            f"{metric} drop <= {100 * settings['max_accuracy_drop']:g}% on the validation "
            f"data, minimizing {settings['minimize'] or 'params'}"
        )
    if settings["params_reduction"] is not None:
        return f"params reduction {100 * settings['params_reduction']:g}%"
    return f"FLOPs reduction {100 * settings['flops_reduction']:g}%"
