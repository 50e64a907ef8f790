"""The trained baselines the studies prune.

A baseline directory is what `tf-asap train --output DIR` writes:
`DIR/baseline/model.keras`, `DIR/baseline/rewind.npz` and `DIR/train.json`
(data set, model, seed and share of the held-out validation split, batch
size, learning rate, epochs, test accuracy, training time). The studies
hold out exactly the images that baseline never trained on and make every
decision on them.

`--quick` trains a tiny baseline into the work directory instead (the same
layout), so that the harness can be checked in minutes.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAVED_MODELS = os.path.join(os.path.dirname(HERE), "saved_models")


class BaselineError(ValueError):
    """A baseline directory is missing, incomplete, or has no held-out split."""


@dataclasses.dataclass(frozen=True)
class BaselineInfo:
    """One trained baseline, as its `train.json` describes it."""

    directory: str
    model_name: str
    dataset: str
    seed: int
    validation_split: float
    batch_size: int
    learning_rate: float
    epochs: int
    rewind_epoch: int
    test_accuracy: float | None
    validation_accuracy: float | None
    train_seconds: float | None
    command: str

    @property
    def model_path(self):
        return os.path.join(self.directory, "baseline", "model.keras")

    @property
    def rewind_path(self):
        return os.path.join(self.directory, "baseline", "rewind.npz")


def read_baseline(directory):
    """Reads a baseline directory; raises `BaselineError` naming what is wrong."""
    settings_path = os.path.join(directory, "train.json")
    if not os.path.exists(settings_path):
        raise BaselineError(
            f"'{directory}' holds no train.json. Pass a directory written by "
            "`tf-asap train --output DIR`."
        )
    with open(settings_path, encoding="utf-8") as file:
        settings = json.load(file)
    if not settings.get("validation_split"):
        raise BaselineError(
            f"The baseline in '{directory}' was trained on the whole training split "
            "(its train.json records no validation_split), so no training images are "
            "left to make decisions on without touching the test set. Train it again "
            "with the current `tf-asap train`, which holds out a seeded split."
        )
    info = BaselineInfo(
        directory=directory, model_name=settings["model"], dataset=settings["dataset"],
        seed=int(settings.get("seed") or 0), validation_split=float(settings["validation_split"]),
        batch_size=int(settings.get("batch_size") or 128),
        learning_rate=float(settings["learning_rate"]), epochs=int(settings["epochs"]),
        rewind_epoch=int(settings["rewind_epoch"]),
        test_accuracy=settings.get("test_accuracy"),
        validation_accuracy=settings.get("validation_accuracy"),
        train_seconds=settings.get("train_seconds"), command=settings.get("command", ""),
    )
    if not os.path.exists(info.model_path):
        raise BaselineError(f"'{info.model_path}' is missing; train the baseline again.")
    return info


def shipped_baseline(model_name, dataset, root=SAVED_MODELS):
    """The shipped baseline directory of a model: `saved_models/<model>`, else any
    `saved_models/*/train.json` naming that model and data set.

    Raises:
        BaselineError: If there is none.
    """
    direct = os.path.join(root, model_name)
    if os.path.exists(os.path.join(direct, "train.json")):
        return direct
    for path in sorted(glob.glob(os.path.join(root, "*", "train.json"))):
        with open(path, encoding="utf-8") as file:
            settings = json.load(file)
        if settings.get("model") == model_name and settings.get("dataset") == dataset:
            return os.path.dirname(path)
    raise BaselineError(
        f"No shipped baseline of {model_name} on {dataset} under '{root}'. Train one with "
        f"`tf-asap train --dataset {dataset} --model {model_name} --output DIR` and pass "
        "--baseline DIR."
    )


def train_tiny_baseline(model_name, budget, directory, dataset="fashion_mnist", seed=0,
                        validation_split=0.1, verbose=0):
    """Trains the `--quick` baseline into `directory` (reused if already there)."""
    if os.path.exists(os.path.join(directory, "train.json")):
        return read_baseline(directory)
    import keras

    from tf_asap import data, recipe, zoo
    from tf_asap.rounds.controller import train_baseline

    learning_rate = 0.05
    keras.utils.set_random_seed(seed)
    split = {"validation_split": validation_split, "seed": seed}
    train = data.load_dataset(dataset, "train", limit=budget.baseline_images,
                              subset="training", **split)
    validation = data.load_dataset(dataset, "train", shuffle=False, augment=False,
                                   limit=budget.validation_images, subset="validation", **split)
    model = zoo.build_model(model_name)
    steps = int(train.cardinality())
    optimizer = recipe.paper_optimizer(budget.baseline_epochs, steps, learning_rate=learning_rate)
    started = time.monotonic()
    baseline = train_baseline(model, train, validation, budget.baseline_epochs, directory,
                              optimizer=optimizer, verbose=verbose)
    settings = {
        "command": "benchmarks/studies.py --quick (tiny smoke-run baseline)",
        "dataset": dataset, "model": model_name, "seed": seed,
        "validation_split": validation_split, "batch_size": data.DEFAULT_BATCH_SIZE,
        "learning_rate": learning_rate, "epochs": baseline.epochs,
        "rewind_epoch": baseline.rewind_epoch, "limit": budget.baseline_images,
        "validation_accuracy": baseline.accuracy, "test_accuracy": None,
        "train_seconds": round(time.monotonic() - started, 1),
    }
    with open(os.path.join(directory, "train.json"), "w", encoding="utf-8") as file:
        json.dump(settings, file, indent=2, sort_keys=True)
    return read_baseline(directory)
