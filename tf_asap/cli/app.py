"""The `tf-asap` program: the top-level parser, and exit codes.

Every command is a thin layer over the Python API, one module each (`train`,
`prune`, `export`, `profile`, `report`, `demo`) owning its sub-parser; what
the command line adds is argument parsing, defaults read from the
directories earlier commands wrote, quiet output and exit codes:

- `0` success;
- `2` usage error: argparse's own, and our checks of flag values and of
  flags that contradict each other, with a message naming the flag and the
  fix;
- `1` failure: one line saying why (a data set that cannot be found, a run
  directory of another model...). `--debug` shows the traceback instead;
- `130` interrupted (Ctrl-C); a pruning run resumes with `--resume`.

Arguments are parsed before TensorFlow is imported, so `--help` and usage
errors answer at once and print nothing but the usage. TensorFlow's log
level is set, and its C++ output filtered (`tf_asap.cli.output`), before a
command imports it.
"""

import argparse
import sys
import traceback

from tf_asap.cli import demo, export, profile, prune, report, train
from tf_asap.cli.flags import PROG, UsageError, add_debug
from tf_asap.cli.output import NativeStderrFilter, quiet_tensorflow, say

COMMANDS = (train, prune, export, profile, report, demo)


def build_parser():
    """The `tf-asap` argument parser (exposed for documentation and tests)."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Adaptive activation-based structured pruning for Keras 3.",
        epilog=(
            "typical use:\n"
            f"  {PROG} train --data fashion_mnist --model vgg_small --epochs 10 --output baselines/fmnist\n"
            f"  {PROG} prune baselines/fmnist --max-accuracy-drop 0.5% --run-dir runs/fmnist\n"
            f"  {PROG} export runs/fmnist --output deploy --format saved_model tflite --quantization int8 --evaluate\n"
            f"  {PROG} report runs/fmnist\n"
            f"  {PROG} prune model.keras --data photos/ --params-reduction 50% --run-dir runs/mine\n"
            f"Run '{PROG} COMMAND --help' for a command's flags."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", dest="show_version",
                        help="print the version and exit")
    add_debug(parser, default=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
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


def _interrupted(args):
    hint = ""
    if args.command == "prune":
        hint = f"; run again with --resume --run-dir {args.run_dir} to continue"
    elif args.command == "demo":
        hint = "; run it again to continue"
    print(f"{PROG} {args.command}: interrupted{hint}", file=sys.stderr)
    return 130


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
        say(f"{PROG} {_version()}")
        return 0
    if args.command is None:
        parser.print_help()
        return 2
    subparser = parser._subparsers._group_actions[0].choices[args.command]
    if getattr(args, "verbose", 0) is None:
        args.verbose = 1 if sys.stdout.isatty() else 2
    stderr_filter = None
    if not args.debug:
        quiet_tensorflow()
        stderr_filter = NativeStderrFilter()
    try:
        return args.handler(args)
    except UsageError as error:
        subparser.print_usage(sys.stderr)
        print(f"{PROG} {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return _interrupted(args)
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
