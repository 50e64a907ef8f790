"""Baselines, data splits and per-case result files of one budget.

Decisions (the policy, the best round, the one-shot fraction) read the
baseline's own held-out validation split: the images `tf-asap train` held
out with the seed and share recorded in `train.json`, which the baseline
never trained on. The test images are only evaluated and reported.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os

import keras

from tf_asap import data as datasets
from tf_asap.data.pipelines import array_pipeline, normalise_numpy

from paper_studies.baselines import read_baseline, shipped_baseline, train_tiny_baseline


@dataclasses.dataclass
class StudyData:
    """The data of one (model, seed).

    Attributes:
        train: Batched, shuffled, augmented training images (the validation
            images excluded; at most `budget.finetune_images`).
        validation: Batched held-out validation images (no augmentation).
        test: `(x, y)` test arrays, reported only.
        calibration: Training images the criteria score on.
        steps_per_epoch: Batches in one epoch of `train`.
        description: Where each part comes from, for the tables.
    """

    train: object
    validation: object
    test: tuple
    calibration: object
    steps_per_epoch: int
    description: str


def split_training_images(dataset, validation_split, split_seed, data_dir=None):
    """Raw `(kept, held)` training images: the same split `tf-asap train` held out.

    `tf_asap.data.load_dataset(..., validation_split, subset, seed)` chooses
    its held-out images with `holdout(count, validation_split, seed)`; this
    does the same, so that the split stays the baseline's while the shuffling
    of fine-tuning follows each study seed.
    """
    images, labels = datasets.load_arrays(dataset, "train", normalize=False, data_dir=data_dir)
    kept, held = datasets.holdout(len(labels), validation_split, split_seed)
    return (images[kept], labels[kept]), (images[held], labels[held])


# Written into every case's result file; a file of another version (an older
# harness on other baselines) is not reused.
HARNESS_VERSION = 2


class Context:
    """What every study of one budget shares."""

    def __init__(self, budget, seeds, results_root, work_root, baseline_dirs=None,
                 data_dir=None, verbose=0, controller_options=None):
        self.budget = budget
        # More `RoundController` keyword arguments for every adaptive run
        # (`--controller-option`), passed through unchecked.
        self.controller_options = dict(controller_options or {})
        self.seeds = list(seeds)
        self.data_dir = data_dir
        self.verbose = verbose
        self.work = os.path.join(work_root, budget.name)
        self.results = os.path.join(results_root, budget.name)
        self.runs = os.path.join(self.results, "runs")
        os.makedirs(self.runs, exist_ok=True)
        self._baseline_dirs = self._by_model(baseline_dirs or [])
        self._cache = {}

    @staticmethod
    def _by_model(directories):
        by_model = {}
        for directory in directories:
            info = read_baseline(directory)
            by_model[info.model_name] = directory
        return by_model

    # ------------------------------------------------------------ baselines
    def baseline(self, model_name):
        """The `BaselineInfo` of a model: `--baseline`, the shipped one, or (quick) a tiny one."""
        key = ("baseline", model_name)
        if key not in self._cache:
            if model_name in self._baseline_dirs:
                info = read_baseline(self._baseline_dirs[model_name])
            elif self.budget.train_baseline:
                info = train_tiny_baseline(
                    model_name, self.budget, os.path.join(self.work, "baselines", model_name),
                    verbose=self.verbose,
                )
            else:
                dataset = "cifar10" if self.budget.name == "paper" else "fashion_mnist"
                info = read_baseline(shipped_baseline(model_name, dataset))
            self._cache[key] = info
        return self._cache[key]

    def fresh_model(self, model_name, seed):
        """A new copy of the trained baseline (prunable, every mask on)."""
        keras.utils.set_random_seed(seed)
        return keras.models.load_model(self.baseline(model_name).model_path, compile=False)

    # ----------------------------------------------------------------- data
    def data(self, model_name, seed):
        """The `StudyData` of a model's baseline and a study seed (cached)."""
        info = self.baseline(model_name)
        key = ("data", info.dataset, info.validation_split, info.seed, seed)
        if key in self._cache:
            return self._cache[key]
        budget = self.budget
        dataset_info = datasets.dataset_info(info.dataset)
        (train_x, train_y), (held_x, held_y) = split_training_images(
            info.dataset, info.validation_split, info.seed, self.data_dir
        )
        limit = budget.finetune_images
        train = array_pipeline(train_x[:limit], train_y[:limit], dataset_info, info.batch_size,
                               True, True, dataset_info.flip, seed, True)
        validation_limit = budget.validation_images
        validation = array_pipeline(held_x[:validation_limit], held_y[:validation_limit],
                                    dataset_info, 256, False, False, False, 0, True)
        test = datasets.load_arrays(info.dataset, "test", limit=budget.test_images,
                                    data_dir=self.data_dir)
        calibration = normalise_numpy(train_x[:budget.calibration_samples], dataset_info)
        described = (
            f"{info.dataset}: fine-tuning on {len(train_x[:limit]):,} training images, decisions "
            f"on {len(held_y[:validation_limit]):,} held-out validation images "
            f"({100 * info.validation_split:g}% split, seed {info.seed}), "
            f"{len(test[1]):,} test images reported"
        )
        self._cache[key] = StudyData(
            train=train, validation=validation, test=test, calibration=calibration,
            steps_per_epoch=int(train.cardinality()), description=described,
        )
        return self._cache[key]

    # ---------------------------------------------------------- result files
    def result_path(self, study, model_name, method, seed):
        return os.path.join(self.runs, study, f"{model_name}__{method}__s{seed}.json")

    def load_result(self, study, model_name, method, seed):
        path = self.result_path(study, model_name, method, seed)
        if not os.path.exists(path):
            return None
        result = read_json(path)
        return result if result.get("harness") == HARNESS_VERSION else None

    def save_result(self, study, model_name, method, seed, result):
        result = dict(result, study=study, model=model_name, method=method, seed=seed,
                      budget=self.budget.name, smoke_run=self.budget.is_smoke_run,
                      harness=HARNESS_VERSION,
                      finished=datetime.datetime.now().isoformat(timespec="seconds"))
        write_json(self.result_path(study, model_name, method, seed), result)
        return result

    def work_dir(self, study, model_name, method, seed):
        return os.path.join(self.work, study, f"{model_name}__{method}__s{seed}")


def write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, sort_keys=True, default=float)
        file.write("\n")
    os.replace(temporary, path)


def read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def say(text):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {text}", flush=True)
