"""Flags shared by several commands, and the argument types that read them.

Every flag that more than one command takes is declared here once, so its
spelling, type and help read the same everywhere. Argument types check
values with `tf_asap.checks`, the validators the library uses, and turn
their `ConfigurationError` into argparse's usage error (exit code 2).

Imports nothing heavy: parsing happens before TensorFlow is imported.
"""

import argparse
import textwrap

from tf_asap.checks import check_int, check_number
from tf_asap.distribute import STRATEGY_NAMES
from tf_asap.errors import ConfigurationError

PROG = "tf-asap"

CRITERIA = ("attention", "l1", "l2", "apoz", "random")
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")


class UsageError(Exception):
    """A flag value or combination the command cannot work with (exit code 2)."""


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
    if not value >= 0 or value == float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(
            f"must be at least 0 (a fraction like 0.005 or a percent like 0.5%); "
            f"received {text!r}"
        )
    if value >= 1:
        hint = f"; did you mean {raw}%?" if not percent and number < 100 else ""
        raise argparse.ArgumentTypeError(f"must be below 1 (100%); received {text!r}{hint}")
    return value


def _checked(parse, check, **limits):
    """An argparse type: `parse` the text, then `check` it with tf_asap.checks."""

    def read(text):
        try:
            value = parse(text)
        except ValueError:
            value = text  # the check names what was expected
        try:
            return check("value", value, **limits)
        except ConfigurationError as error:
            # "`value` must be an integer >= 1; received '0'." -> argparse's wording.
            raise argparse.ArgumentTypeError(str(error).replace("`value` ", "", 1)) from None

    return read


positive_int = _checked(int, check_int, minimum=1)
non_negative_int = _checked(int, check_int, minimum=0)
any_int = _checked(int, check_int)
positive_float = _checked(float, check_number, low=0.0, low_open=True)
at_least_one = _checked(float, check_number, low=1.0)


def max_fraction(text):
    """A per-round cap: a share in (0, 1] (or a percent), or "none" for the paper's rule."""
    raw = str(text).strip().lower()
    if raw == "none":
        return "none"
    if raw in ("1", "1.0", "100%"):
        return 1.0
    value = fraction(text)
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"must be above 0 (a round must be able to remove a channel), or none for "
            f"the paper's rule; received {text!r}"
        )
    return value


def bound_or_none(text):
    """A drop bound (a fraction or a percent), or "none" to turn the bound off."""
    return "none" if str(text).strip().lower() == "none" else fraction(text)


def validation_fraction(text):
    """A fraction of the training data held out for decisions: in (0, 1)."""
    value = fraction(text)
    if value == 0:
        raise argparse.ArgumentTypeError(
            f"must be above 0: decisions need held-out images; received {text!r}"
        )
    return value


class HelpFormatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description on its own; adds "(default: X)" to help."""

    def _fill_text(self, text, width, indent):
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


def add_debug(parser, default=argparse.SUPPRESS):
    """`--debug`: everything TensorFlow logs, and full tracebacks."""
    parser.add_argument(
        "--debug", action="store_true", default=default,
        help="show every TensorFlow log line and full tracebacks",
    )


def add_verbose(parser):
    """`--verbose 0|1|2`, Keras' verbosity of `fit`."""
    parser.add_argument(
        "--verbose", type=int, choices=(0, 1, 2), default=None,
        help="0 quiet, 1 progress bars, 2 one line per epoch (default: 1 on a "
        "terminal, 2 otherwise)",
    )


def add_distribute(parser):
    """`--distribute none|mirrored|multi-worker`: the `tf.distribute` strategy to run on."""
    parser.add_argument(
        "--distribute", choices=STRATEGY_NAMES, default="none",
        help="none: one device; mirrored: MirroredStrategy over every visible GPU (or the "
        "logical CPU devices configured); multi-worker: MultiWorkerMirroredStrategy, one "
        "command per worker with TF_CONFIG set (see the README)",
    )


def add_data(parser, default_help, training=True):
    """The data flags: `--data`, `--validation-split`, `--test-data`, limits.

    Args:
        parser: the command's parser (or an argument group).
        default_help: what `--data` defaults to, for its help text.
        training: whether the command trains (adds `--limit` and
            `--batch-size`). Defaults to `True`.
    """
    group = parser.add_argument_group("data")
    group.add_argument(
        "--data", "--dataset", dest="data", default=None, metavar="DATA",
        help="a folder with one sub-folder of images per class, a .npz file "
        "(x_train, y_train; optional x_val/y_val, x_test/y_test), tfds:NAME for any "
        "tensorflow-datasets name, or a named set (fashion_mnist, mnist, cifar10, "
        f"cifar100, imagenette, imagenet2012) (default: {default_help})",
    )
    group.add_argument(
        "--validation-split", type=validation_fraction, default=None, metavar="FRACTION",
        help="fraction of the training data held out, seeded, for validation and "
        "every pruning decision; never the test data (default: 10%%, or the data's "
        "own validation split)",
    )
    group.add_argument(
        "--test-data", default=None, metavar="DIR",
        help="a folder of test images (one sub-folder per class), only evaluated "
        "and reported (default: the data's test split, if it has one)",
    )
    group.add_argument("--validation-limit", type=positive_int, default=None, metavar="N",
                       help="use at most N validation images")
    group.add_argument("--test-limit", type=positive_int, default=None, metavar="N",
                       help="evaluate on at most N test images")
    if training:
        group.add_argument("--limit", type=positive_int, default=None, metavar="N",
                           help="train on N training images only (faster)")
        group.add_argument("--batch-size", type=positive_int, default=None,
                           help="batch size (default: the training's, or 128)")
    return group
