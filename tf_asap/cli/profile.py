"""`tf-asap profile`: per-layer params and FLOPs of a model, dense and effective."""

import json
import os

from tf_asap.cli import directories
from tf_asap.cli.flags import HelpFormatter, UsageError, add_debug
from tf_asap.cli.output import say


def add_parser(commands):
    """Adds `profile` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "profile", formatter_class=HelpFormatter,
        help="per-layer params and FLOPs of a .keras model, dense and effective",
        description=(
            "Print the parameters and FLOPs of every layer with weights, as built "
            "(dense) and once masked channels are removed (effective). FLOPs are 2 x "
            "multiply-accumulates of one sample. MODEL is a .keras file, a run "
            "directory (its final masked model) or a training directory."
        ),
    )
    parser.add_argument("model", metavar="MODEL", help=".keras file or directory")
    parser.add_argument("--all-layers", action="store_true", help="list layers without weights too")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_debug(parser)
    parser.set_defaults(handler=run)


def _model_path(path):
    directories.existing_path(path, "MODEL")
    if not os.path.isdir(path):
        return path
    for candidate in (directories.FINAL_MODEL, directories.BASELINE_MODEL):
        if os.path.isfile(os.path.join(path, candidate)):
            return os.path.join(path, candidate)
    raise UsageError(
        f"MODEL {path} is a directory without {directories.FINAL_MODEL} or "
        f"{directories.BASELINE_MODEL}: pass a .keras file."
    )


def run(args):
    """Prints the profile; returns the exit code."""
    path = _model_path(args.model)
    from tf_asap.core.counting import count_cost  # heavy: once the arguments are known good

    model = directories.load_model(path)
    cost = count_cost(model)
    if args.json:
        layers = [
            {
                "name": layer.name, "type": layer.type, "params": layer.params,
                "effective_params": layer.effective_params, "flops": layer.flops,
                "effective_flops": layer.effective_flops,
            }
            for layer in cost.layers
        ]
        say(json.dumps({
            "model": path, "params": cost.params, "effective_params": cost.effective_params,
            "flops": cost.flops, "effective_flops": cost.effective_flops, "layers": layers,
        }, indent=2))
        return 0
    say(f"{model.name} ({path})")
    say(cost.to_table(only_weighted=not args.all_layers))
    say(
        f"params {cost.params:,} -> {cost.effective_params:,} effective "
        f"({100 * cost.params_reduction:.1f}% removed); FLOPs per sample "
        f"{cost.flops:,} -> {cost.effective_flops:,} ({100 * cost.flops_reduction:.1f}% removed)"
    )
    return 0
