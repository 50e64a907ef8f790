"""`tf-asap report`: the round table and plot (the paper's Figure 4) of a run."""

import os

from tf_asap.cli.flags import HelpFormatter, UsageError, add_debug
from tf_asap.cli.output import say


def add_parser(commands):
    """Adds `report` and its flags to the `tf-asap` sub-parsers."""
    parser = commands.add_parser(
        "report", formatter_class=HelpFormatter,
        help="round table and plot (the paper's Figure 4) of a pruning run",
        description=(
            "Print the round table of a run directory (round, threshold, accuracy "
            "drop, params and FLOPs left, decision) and write the plot of accuracy "
            "drop and reduction per round. Works on unfinished runs too."
        ),
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="run directory of `tf-asap prune`")
    parser.add_argument("--plot", default=None,
                        help="also write the plot here (RUN_DIR/report.md and RUN_DIR/rounds.png "
                        "are always written)")
    add_debug(parser)
    parser.set_defaults(handler=run)


def run(args):
    """Writes and prints the report; returns the exit code."""
    if not os.path.isdir(args.run_dir):
        raise UsageError(f"RUN_DIR {args.run_dir} is not a directory.")
    from tf_asap.rounds import report  # heavy: once the arguments are known good

    written = report.write_report(args.run_dir)
    plot = written["plot"]
    with open(written["report"], encoding="utf-8") as file:
        # The Markdown image link is for viewers of report.md, not a terminal.
        text = "\n".join(line for line in file.read().splitlines() if not line.startswith("!["))
    if args.plot:
        report.plot_rounds(report.read_rounds(args.run_dir), args.plot)
        plot = args.plot
    say(text.rstrip())
    say("")
    say(f"Plot: {plot}" if plot else "No plot: install matplotlib (pip install tf_asap[plot]).")
    if written.get("layers_plot"):
        say(f"Layers: {written['layers_plot']} (filters kept per layer, params and FLOPs share)")
    return 0
