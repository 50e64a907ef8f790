"""`tf-asap prune`: adaptive pruning to an accuracy, params or FLOPs target (Algorithm 1)."""

import os

from tf_asap import defaults
from tf_asap.cli import datasets, directories, prune_settings
from tf_asap.cli.flags import (
    CRITERIA,
    PROG,
    HelpFormatter,
    add_data,
    add_debug,
    add_distribute,
    add_verbose,
    any_int,
    at_least_one,
    bound_or_none,
    fraction,
    max_fraction,
    non_negative_int,
    positive_float,
    positive_int,
)
from tf_asap.cli.output import percent, say


def add_parser(commands):
    """Adds `prune` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "prune", formatter_class=HelpFormatter,
        help="prune a trained model adaptively to an accuracy, params or FLOPs target",
        description=(
            "Prune a trained model round by round (Algorithm 1): score filters "
            "(activation attention by default), mask those under the layer-aware "
            "thresholds, rewind, retrain, evaluate on the validation data, and let the "
            "policy raise the threshold, roll back or stop. Validation is a seeded "
            "--validation-split of the training data (or the data's own validation "
            "split); the test data is never used for a decision, only reported.\n\n"
            "Give exactly one target: --max-accuracy-drop (accuracy-guaranteed), "
            "--params-reduction (memory-constrained) or --flops-reduction "
            "(FLOPs-constrained). Targets take fractions (0.005) or percents (0.5%).\n\n"
            "Everything goes to --run-dir; after a crash or Ctrl-C, "
            "`tf-asap prune --resume --run-dir DIR` continues without losing a "
            "completed round. The result is RUN_DIR/final/slim.keras."
        ),
    )
    parser.add_argument("model", nargs="?", default=None, metavar="MODEL",
                        help="a directory written by `tf-asap train` (uses its rewind "
                        "checkpoint and settings) or a .keras file")
    parser.add_argument("--run-dir", required=True, help="run directory (created)")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --run-dir; flags not given are taken from it")
    target = parser.add_argument_group("target (exactly one)")
    target.add_argument("--max-accuracy-drop", type=fraction, default=None,
                        help="largest accuracy drop, e.g. 0.5%% or 0.005")
    target.add_argument("--params-reduction", type=fraction, default=None,
                        help="fraction of parameters to remove, e.g. 70%%")
    target.add_argument("--flops-reduction", type=fraction, default=None,
                        help="fraction of FLOPs to remove, e.g. 50%%")
    target.add_argument("--minimize", choices=("params", "flops"), default=None,
                        help="with --max-accuracy-drop: what to minimize (default: params)")
    target.add_argument("--metric", default=None,
                        help="the validation metric the policy reads, as compiled in the model "
                        f"(e.g. auc, mae) (default: {defaults.METRIC})")
    target.add_argument("--mode", choices=("max", "min"), default=None,
                        help="with --metric: whether larger (max) or smaller (min) is better "
                        f"(default: {defaults.MODE})")
    target.add_argument("--tolerance", type=fraction, default=None,
                        help="with a reduction target: how far beyond it still meets it "
                        f"(default: {defaults.TARGET_TOLERANCE * 100:g}%%)")
    search = parser.add_argument_group("search")
    search.add_argument("--criterion", choices=CRITERIA, default=None,
                        help="filter importance (default: attention, the paper's)")
    search.add_argument("--max-rounds", type=positive_int, default=None,
                        help=f"last pruning round (default: {defaults.MAX_ROUNDS})")
    search.add_argument("--step", type=positive_float, default=None,
                        help="initial threshold step λ in relative units (default: the policy's)")
    search.add_argument("--step-growth", type=at_least_one, default=None,
                        help="multiply λ by this after every passing round that pruned, up "
                        f"to --step (default: {defaults.STEP_GROWTH:g}, the paper's: a halved λ stays halved)")
    search.add_argument("--patience", type=positive_int, default=None,
                        help=f"rounds of unchanged size that end the run (default: {defaults.PATIENCE})")
    search.add_argument("--calibration-samples", type=positive_int, default=None,
                        help="training images the filters are scored on "
                        f"(default: {defaults.CALIBRATION_SAMPLES})")
    add_search_flags(search)
    training = parser.add_argument_group("retraining")
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
    training.add_argument("--seed", type=any_int, default=None,
                          help="random seed, also of the held-out split (default: the training's, or 0)")
    add_retraining_flags(training)
    add_data(parser, "the data MODEL was trained on")
    add_verbose(parser)
    add_distribute(parser)
    add_debug(parser)
    parser.set_defaults(handler=run)


# The engine flags whose default a command may change, as the help shows
# them; `demo` passes its own.
ENGINE_DEFAULTS = {
    "schedule": defaults.SCHEDULE, "final_epochs": defaults.FINAL_EPOCHS, "final_max_drop": None,
}


def add_search_flags(group, shown=ENGINE_DEFAULTS):
    """The threshold-search flags shared by `prune` and `demo`.

    The flags default to None (the run's manifest or the library decides);
    `shown` names, in the help, what None becomes for the flags a command
    changes (`demo` passes its own); the others show `tf_asap.defaults`.
    """
    group.add_argument("--schedule", choices=("paper", "bisect"), default=None,
                       help="threshold search: paper (Algorithm 2, λ halves after a failure) or "
                       "bisect (λ doubles until a failure, then bisect) "
                       f"(default: {shown['schedule']})")
    group.add_argument("--max-fraction", type=max_fraction, default=None,
                       help="largest share of a group's live channels one round removes, or "
                       f"none for the paper's rule (default: {defaults.MAX_FRACTION})")
    group.add_argument("--round-to", type=positive_int, default=None, metavar="N",
                       help="every pruned layer keeps a multiple of N channels (rounded up), the "
                       "channel block of the runtime the model is for, e.g. 16 for XNNPACK's "
                       "int8 kernels on AVX-512 CPUs without AMX; benchmarks/bench_widths.py "
                       "measures a machine's (default: exact counts)")
    group.add_argument("--size-tolerance", type=max_fraction, default=None,
                       help="with --schedule bisect: the size bracket (share of the baseline's "
                       "params or FLOPs) above which a failing threshold is retried trimmed to "
                       f"the bracket's middle, or none to bisect the threshold only "
                       f"(default: {defaults.SIZE_TOLERANCE})")
    group.add_argument("--scan-samples", type=non_negative_int, default=None,
                       help="with --schedule bisect and --max-accuracy-drop: validation images of "
                       "the scan that sizes round 1's threshold; 0 turns it off "
                       f"(default: {defaults.SCAN_SAMPLES})")
    group.add_argument("--no-early-rejection", dest="early_rejection", action="store_const",
                       const=False, default=None,
                       help="retrain every round fully, even when it cannot reach the bound")


def add_retraining_flags(group, shown=ENGINE_DEFAULTS):
    """The retraining flags shared by `prune` and `demo` (see `add_search_flags`)."""
    group.add_argument("--retrain", choices=("slim", "masked"), default=None,
                       help="train the physically slimmed model (faster, same result) or the "
                       f"masked one (default: {defaults.RETRAIN})")
    group.add_argument("--distill", action="store_const", const=True, default=None,
                       help="distil from the unpruned model while retraining")
    group.add_argument("--distill-alpha", type=fraction, default=None,
                       help="with --distill: weight of the task loss; 1 - alpha weighs the "
                       f"teacher's soft targets (default: {defaults.DISTILL_ALPHA})")
    group.add_argument("--distill-temperature", type=positive_float, default=None,
                       help="with --distill: softmax temperature of the soft targets "
                       f"(default: {defaults.DISTILL_TEMPERATURE:g})")
    group.add_argument("--final-epochs", type=non_negative_int, default=None,
                       help="epochs to fine-tune the chosen model after the rounds "
                       f"(default: {shown['final_epochs']})")
    bound = shown["final_max_drop"]
    group.add_argument("--final-max-drop", type=bound_or_none, default=None, metavar="DROP",
                       help="with --final-epochs: the largest validation accuracy drop the "
                       "fine-tuned model may show; a round that misses it gives way to the next "
                       "smaller accepted round, fine-tuned in turn (fraction, percent or none; default: "
                       f"{'off' if bound is None else f'{100 * bound:g}%%'})")


def run_pruning(settings, run_dir, verbose, distribute_name="none"):
    """Runs (or resumes) a pruning run, on the strategy `--distribute` names.

    Returns:
        `(PruningResult, CommandData)`.
    """
    import keras  # heavy: imported once the arguments are known good

    from tf_asap import distribute, recipe
    from tf_asap.rounds.controller import RoundController

    strategy = distribute.strategy_from_name(distribute_name)
    epochs, rewind_epoch = prune_settings.rewind_epochs(settings)
    keras.utils.set_random_seed(settings["seed"])
    with strategy.scope():
        model = directories.load_model(settings["model_path"])
    settings["calibration_samples"] = settings["calibration_samples"] or defaults.CALIBRATION_SAMPLES
    data = datasets.load_for_model(model, settings["dataset"], settings)
    steps = int(data.train.cardinality())
    optimizer = None
    if settings["rewind"] == "lr":
        # Learning-rate rewinding (Renda et al., 2020): every round replays
        # the last epochs of the recipe's schedule, built for this run's
        # epoch length so that its decays fall where they should.
        settings["learning_rate"] = settings["learning_rate"] or datasets.default_learning_rate(
            model.inputs[0].shape[1:]
        )
        optimizer = recipe.paper_optimizer(epochs, steps, learning_rate=settings["learning_rate"])
    elif settings["limit"] is not None:
        _note_shorter_epochs(settings, steps)
    saved = {key: settings[key] for key in prune_settings.KEYS}
    # Only the chief worker writes the run directory (tf_asap.distribute).
    chief = distribute.is_chief(strategy)
    saved_path = os.path.join(run_dir, directories.PRUNE_SETTINGS)
    # Written when the run starts, so that a crashed run resumes with
    # `--resume` alone; a resume with other flags must not replace it before
    # the controller has accepted them (it refuses other settings).
    if chief and not os.path.exists(saved_path):
        directories.write_json(saved_path, saved)
    criterion = settings["criterion"] or "attention"
    controller = RoundController(
        model, prune_settings.make_policy(settings), data.train, data.validation,
        run_dir=run_dir, epochs=epochs, rewind_epoch=rewind_epoch,
        rewind_checkpoint=settings["rewind_checkpoint"], calibration_data=data.calibration,
        criterion=criterion, optimizer=optimizer, verbose=verbose, strategy=strategy,
        **prune_settings.engine_options(settings),
    )
    say(
        f"Pruning {model.name} on {data.description} ({'; '.join(data.notes)}): "
        f"{prune_settings.describe_policy(settings)}, criterion {criterion}, "
        f"{settings['rewind']} rewinding to epoch {rewind_epoch} of {epochs} "
        f"({epochs - rewind_epoch} epoch(s) of {steps} steps per round). Run directory: {run_dir}"
    )
    say(f"Decisions use the validation data: {data.validation_label}; the test data is only reported.")
    result = controller.run()
    if chief:
        directories.write_json(saved_path, saved)
    return result, data


def _note_shorter_epochs(settings, steps):
    from tf_asap.rounds.controller import load_state

    baseline_steps = load_state(settings["rewind_checkpoint"])[1].get("steps_per_epoch")
    if baseline_steps and baseline_steps != steps:
        # The rewound schedule counts optimizer steps of the full training.
        say(
            f"Note: the baseline's learning-rate schedule was built for "
            f"{baseline_steps} steps per epoch; with --limit an epoch has {steps}, so "
            "each round covers a shorter stretch of it. --rewind lr fits the "
            "schedule to --limit."
        )


def test_accuracies(settings, result, data):
    """`(baseline, pruned)` accuracy on the test data, or `None` without test data."""
    if data.test is None:
        return None
    baseline = directories.deployable(directories.load_model(settings["model_path"]))
    return datasets.accuracy(baseline, data.test), datasets.accuracy(result.slim_model, data.test)


def result_lines(result, tested):
    """What a finished run prints: validation (decisions) and test (report only)."""
    baseline, best = result.rounds[0], result.best
    lines = [
        f"Best round {result.best_round}: validation accuracy {percent(baseline['accuracy'])} -> "
        f"{percent(best['accuracy'])}, params -{100 * best['params_reduction']:.1f}%, "
        f"FLOPs -{100 * best['flops_reduction']:.1f}% ({len(result.rounds) - 1} rounds).",
    ]
    if tested is not None:
        lines.append(
            f"Test accuracy (not used by any decision): baseline {percent(tested[0])} -> "
            f"pruned {percent(tested[1])} ({100 * (tested[1] - tested[0]):+.2f} pts)."
        )
    if result.final_tuning:
        lines.append(f"Validation accuracy at the end{tuning_phrase(result.final_tuning)}.")
    lines += [
        f"Stopped: {result.rounds[-1].get('reason', '')}",
        f"Masked model: {os.path.join(result.run_dir, directories.FINAL_MODEL)}",
        f"Slim model:   {os.path.join(result.run_dir, directories.SLIM_MODEL)}",
        f"Report:       {os.path.join(result.run_dir, directories.REPORT)}",
    ]
    return lines


def tuning_phrase(tuned):
    """How the final fine-tuning ended (validation accuracy), against its bound and with any step back."""
    if not tuned:
        return ""
    bound = tuned.get("max_drop")
    attempts = tuned.get("attempts") or [tuned]
    missed = [
        f"round {a['round']} reached {percent(a['validation_accuracy_after'])}"
        for a in attempts if a["epochs"] and a is not attempts[-1]
    ]
    stepped = (
        f"; over the final bound (drop <= {percent(bound)}), {', '.join(missed)} after fine-tuning"
        if missed else ""
    )
    if not tuned["epochs"]:
        return f"{stepped}: no pruned round kept the bound, so the result is the unpruned model"
    kept = f", within the final bound (drop <= {percent(bound)})" if bound is not None else ""
    return (
        f"{stepped}; round {tuned['round']}: {percent(tuned['validation_accuracy_after'])} after "
        f"{tuned['epochs']} epoch(s) of final fine-tuning{kept}" if missed else
        f", {percent(tuned['validation_accuracy_after'])} after {tuned['epochs']} epoch(s) of "
        f"final fine-tuning{kept}"
    )


def run(args):
    """Prunes (or resumes); returns the exit code."""
    settings = prune_settings.resolve(prune_settings.from_args(args), args.run_dir, args.resume)
    result, data = run_pruning(settings, args.run_dir, args.verbose, args.distribute)
    for line in result_lines(result, test_accuracies(settings, result, data)):
        say(line)
    say(f"Next: {PROG} export {args.run_dir} --output {os.path.join(args.run_dir, 'export')}")
    return 0
