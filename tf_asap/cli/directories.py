"""The files commands share: what `train` writes, `prune` reads, `export` finds.

- `tf-asap train --output DIR` writes `DIR/baseline/model.keras` (the
  trained model, with masks all on), `DIR/baseline/rewind.npz` (the rewind
  checkpoint of epoch k) and `DIR/train.json` (the data, model and recipe
  used, the command, the accuracy and the date);
- `tf-asap prune DIR --run-dir RUN` reads them (data, batch size, learning
  rate and epochs default to the training's) and writes the run directory of
  `RoundController`, plus `RUN/prune.json` with its settings, so
  `tf-asap prune --resume --run-dir RUN` needs no other flag;
- `tf-asap export RUN` exports `RUN/final/slim.keras`.

Every file name is spelled here once. Heavy modules are imported inside the
functions that load models (command-line start-up speed).
"""

import datetime
import json
import os
import re
import shlex

from tf_asap.cli.flags import PROG, UsageError
from tf_asap.files import atomic_write_json

TRAIN_SETTINGS = "train.json"
PRUNE_SETTINGS = "prune.json"
RUN_MANIFEST = "run.json"
BASELINE_MODEL = os.path.join("baseline", "model.keras")
REWIND_CHECKPOINT = os.path.join("baseline", "rewind.npz")
FINAL_MODEL = os.path.join("final", "model.keras")
SLIM_MODEL = os.path.join("final", "slim.keras")
REPORT = "report.md"
DEFAULT_DEMO_BASELINE = os.path.join("saved_models", "fashion_mnist_cnn")


def read_json(path):
    """The JSON value stored at `path`."""
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def write_json(path, value):
    """Writes `value` as JSON, atomically (`tf_asap.files`)."""
    atomic_write_json(path, value)


def train_settings(directory):
    """The `train.json` of a training directory, or `{}` when there is none."""
    path = os.path.join(directory, TRAIN_SETTINGS)
    return read_json(path) if os.path.isfile(path) else {}


def existing_path(path, flag):
    """`path`, or a usage error naming `flag` when it does not exist."""
    if not os.path.exists(path):
        raise UsageError(f"{flag}: '{path}' does not exist. Check the path.")
    return path


def command_line(argv):
    """The command as the user could type it again."""
    return " ".join(shlex.quote(part) for part in [PROG, *argv])


def today():
    """The date, ISO-formatted, for the settings files."""
    return datetime.date.today().isoformat()


def directory_size(path):
    """Bytes of a file, or of every file under a directory."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, name)) for name in files)
    return total


def c_identifier(text):
    """`text` made a valid C identifier (model names end up in C sources)."""
    name = re.sub(r"\W", "_", text)
    return name if re.match(r"[A-Za-z_]", name) else f"model_{name}"


def load_model(path):
    """Loads a `.keras` model with tf_asap's layers and recipe registered (safe mode on)."""
    import keras  # heavy: imported once a command runs, not while parsing

    import tf_asap.core.layers  # noqa: F401  (registers MaskedLayer)
    import tf_asap.recipe  # noqa: F401  (registers the recipe's optimizer and schedule)

    return keras.models.load_model(path)


def deployable(model):
    """A plain Keras model: masked models are slimmed, plain ones kept."""
    from tf_asap.core.masks import is_prunable_model
    from tf_asap.core.surgery import slim

    return slim(model) if is_prunable_model(model) else model


def plain_params(model):
    """Parameters of `model` as deployed (masks are not parameters)."""
    from tf_asap.core.counting import count_cost

    return int(count_cost(model).params)


def versions():
    """TensorFlow's and Keras' versions, for the settings files."""
    import keras
    import tensorflow as tf

    return {"tensorflow": tf.__version__, "keras": keras.__version__}
