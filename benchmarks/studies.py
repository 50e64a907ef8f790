"""The paper's comparisons (Tables 1, 3, 4 and Figure 4), reproduced side by side.

One command per study (issue 7):

```
python benchmarks/studies.py adaptive      # Table 1 analog: policies x {attention, L1}
python benchmarks/studies.py mapping       # Table 3 analog: attention mappings, one-shot
python benchmarks/studies.py fixed-rate    # Table 4 analog: IAP / ILP (5%/round) vs adaptive
python benchmarks/studies.py unstructured  # tfmot prune_low_magnitude vs our slimmed model
python benchmarks/studies.py trace         # Figure 4 analog: one accuracy-guaranteed run
python benchmarks/studies.py all           # the five above, in this order
```

Budgets: `--quick` (a harness check: tiny data, 2 epochs, 2 rounds; the
numbers mean nothing), the default CPU budget (Fashion-MNIST training subset,
short schedules, see `BUDGETS`), and `--paper` (CIFAR-10 through
tensorflow-datasets, ResNet-56 / VGG-16, the paper's 182-epoch recipe; needs
a GPU and internet). `--seeds 0 1` runs every case once per seed and reports
the mean and the spread.

Every study is resumable: each (study, model, method, seed) writes one JSON
file under `benchmarks/results/<budget>/runs/`, and a case whose file exists
is skipped. Pruning runs keep their run directories under
`benchmarks/work/<budget>/` (ignored by git), so a killed run resumes after its
last completed round. Each study writes `benchmarks/results/<budget>/<study>.md`
and `.png`, and (unless `--quick` without `--record`) appends its table, the
exact command, the machine and the date to `benchmarks/RESULTS.md`.

The unstructured baseline runs tensorflow-model-optimization in a subprocess
(`studies.py _tfmot-worker`), with tfmot and tf_keras installed into
`benchmarks/work/baselines-site` (never into the main environment), because
importing tfmot sets `TF_USE_LEGACY_KERAS=1`. This process never imports it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gzip
import json
import os
import platform
import shlex
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS_DIR = os.path.join(HERE, "results")
WORK_DIR = os.path.join(HERE, "work")
RESULTS_MD = os.path.join(HERE, "RESULTS.md")
BASELINES_SITE = os.path.join(WORK_DIR, "baselines-site")
BASELINE_PACKAGES = ("tensorflow-model-optimization==0.8.1", "tf-keras==2.21.0")

STUDIES = ("adaptive", "mapping", "fixed-rate", "unstructured", "trace")


# ---------------------------------------------------------------------------
# Budgets.


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much data and training one budget spends.

    Attributes:
        name: `"quick"`, `"default"` or `"paper"`.
        dataset: A `tf_asap.data` data set name.
        models: `tf_asap.zoo` names: the VGG-style model and the ResNet-style one.
        train_limit: Training examples used (`None`: the whole split).
        validation_split: The split accuracy is measured on.
        epochs: `T`, epochs of one full training.
        rewind_epoch: `k`; every pruning round retrains `T - k` epochs.
        learning_rate: Initial rate of the paper's schedule.
        batch_size: Batch size.
        calibration_samples: Training samples the criteria score on.
        max_rounds: Cap on adaptive rounds.
        policy_step: λ, the initial step of `T` of every adaptive policy
            (relative units, see `tf_asap.pruning.policies`); larger than the
            library's defaults on the CPU budgets so that a dozen rounds
            reach the interesting range of `T`.
        fixed_rate_max_rounds: Cap on fixed-rate rounds.
        latency_runs: Timed batch-1 LiteRT calls per model.
        description: One line for the tables.
    """

    name: str
    dataset: str
    models: tuple
    train_limit: int | None
    validation_split: str
    epochs: int
    rewind_epoch: int
    learning_rate: float
    batch_size: int
    calibration_samples: int
    max_rounds: int
    policy_step: float
    fixed_rate_max_rounds: int
    latency_runs: int
    description: str


BUDGETS = {
    "quick": Budget(
        name="quick", dataset="fashion_mnist", models=("resnet_small", "vgg_small"),
        train_limit=1024, validation_split="test[:512]", epochs=2, rewind_epoch=1,
        learning_rate=0.05, batch_size=128, calibration_samples=256, max_rounds=1, policy_step=0.25,
        fixed_rate_max_rounds=2, latency_runs=20,
        description="harness check only: 1,024 training images, 512 test images, "
        "2 epochs, 1 pruning round; the numbers mean nothing",
    ),
    "default": Budget(
        name="default", dataset="fashion_mnist", models=("resnet_small", "vgg_small"),
        train_limit=6000, validation_split="test", epochs=6, rewind_epoch=3,
        learning_rate=0.05, batch_size=128, calibration_samples=1024, max_rounds=12, policy_step=0.25,
        fixed_rate_max_rounds=12, latency_runs=300,
        description="CPU budget: Fashion-MNIST, 6,000 training images (of 60,000), "
        "accuracy on all 10,000 test images, T=6 epochs, rewind k=3 "
        "(3 epochs per round), at most 12 rounds",
    ),
    "paper": Budget(
        name="paper", dataset="cifar10", models=("resnet56", "vgg16"),
        train_limit=None, validation_split="test", epochs=182, rewind_epoch=109,
        learning_rate=0.1, batch_size=128, calibration_samples=2048, max_rounds=50, policy_step=0.1,
        fixed_rate_max_rounds=40, latency_runs=500,
        description="the paper's budget: CIFAR-10, full training set, T=182 epochs, "
        "rewind k=109 (60%), batch 128, lr 0.1 decayed at 50%/75%",
    ),
}

# Study 1: the policies (Table 1), each run with both criteria.
ADAPTIVE_POLICIES = ("acc0", "acc1", "params70", "flops50")
ADAPTIVE_CRITERIA = ("attention", "l1")
# Study 2: the mappings of Table 3 (and the weight-magnitude / random controls).
MAPPING_METHODS = ("mean-p1", "mean-p2", "mean-p4", "max-p1", "sum-p1", "l1", "random")
MAPPING_PARAMS_REDUCTION = 0.5
# `--quick` checks the harness on a few cases: those the other studies build
# on, and one of each kind of criterion.
QUICK_METHODS = {
    "adaptive": ("acc0-attention", "acc0-l1", "acc1-attention", "params70-attention"),
    "mapping": ("mean-p1", "sum-p1", "l1", "random"),
}
# Study 3: fixed rate of the paper's IAP / ILP baselines.
FIXED_RATE = 0.05
# The adaptive runs the other studies build on. Fixed-rate methods are
# compared with the accuracy-guaranteed (1%) run at its reduction; the
# unstructured baseline is matched to the params-target run, whose reduction
# is set by design (at the CPU budget the 0%-drop runs barely prune: their
# accuracy is within retraining noise of the baseline); the trace shows the
# 0%-drop run, the one the first goal is about.
REFERENCE_METHOD = "acc0-attention"
FIXED_RATE_REFERENCE = "acc1-attention"
UNSTRUCTURED_REFERENCE = "params70-attention"


def _pretty(value, digits=2, percent=True):
    if value is None:
        return "n/a"
    if isinstance(value, float) and percent:
        return f"{100 * value:.{digits}f}%"
    return f"{value}"


# ---------------------------------------------------------------------------
# Shared context: data, baselines, result files.


class Context:
    """Data, trained baselines and result files of one budget."""

    def __init__(self, budget, seeds, data_dir=None, verbose=0, results_root=RESULTS_DIR,
                 work_root=WORK_DIR):
        self.budget = budget
        self.seeds = list(seeds)
        self.data_dir = data_dir
        self.verbose = verbose
        self.work = os.path.join(work_root, budget.name)
        self.results = os.path.join(results_root, budget.name)
        self.runs = os.path.join(self.results, "runs")
        os.makedirs(self.runs, exist_ok=True)
        self._data = {}

    # -- data
    def train_data(self, seed):
        from tf_asap.data import load_dataset

        key = ("train", seed)
        if key not in self._data:
            self._data[key] = load_dataset(
                self.budget.dataset, "train", batch_size=self.budget.batch_size,
                limit=self.budget.train_limit, seed=seed, data_dir=self.data_dir,
            )
        return self._data[key]

    def validation_data(self):
        from tf_asap.data import load_dataset

        if "validation" not in self._data:
            self._data["validation"] = load_dataset(
                self.budget.dataset, self.budget.validation_split,
                batch_size=256, shuffle=False, augment=False, data_dir=self.data_dir,
            )
        return self._data["validation"]

    def validation_arrays(self, limit=None):
        from tf_asap.data import load_arrays

        key = ("validation_arrays", limit)
        if key not in self._data:
            self._data[key] = load_arrays(
                self.budget.dataset, self.budget.validation_split, limit=limit,
                data_dir=self.data_dir,
            )
        return self._data[key]

    def calibration_data(self):
        from tf_asap.data import load_arrays

        if "calibration" not in self._data:
            x, _ = load_arrays(
                self.budget.dataset, "train", limit=self.budget.calibration_samples,
                data_dir=self.data_dir,
            )
            self._data["calibration"] = x
        return self._data["calibration"]

    # -- baselines
    def baseline(self, model_name, seed):
        """Trains (or reloads) the baseline of a model and seed: shared by all studies."""
        import keras
        from tf_asap.rounds.controller import train_baseline
        from tf_asap.errors import RunDirectoryError
        from tf_asap.recipe import paper_optimizer
        from tf_asap.zoo import build_model

        keras.utils.set_random_seed(seed)
        model = build_model(model_name)
        train = self.train_data(seed)
        steps = int(train.cardinality().numpy())
        optimizer = paper_optimizer(
            self.budget.epochs, steps, learning_rate=self.budget.learning_rate
        )
        run_dir = os.path.join(self.work, "baselines", f"{model_name}__s{seed}")
        started = time.monotonic()
        try:
            baseline = train_baseline(
                model, train, self.validation_data(), epochs=self.budget.epochs,
                run_dir=run_dir, rewind_epoch=self.budget.rewind_epoch,
                optimizer=optimizer, verbose=self.verbose,
            )
        except RunDirectoryError as error:
            raise RunDirectoryError(
                f"{error}\nThe baseline in '{run_dir}' was trained by another version "
                f"of the model or the budget. Delete '{self.work}' and "
                f"'{self.results}' to start this budget afresh (results made with "
                "the old baseline would not be comparable)."
            ) from error
        info_path = os.path.join(run_dir, "baseline", "harness.json")
        if not os.path.exists(info_path):
            _write_json(info_path, {"wall_time_s": round(time.monotonic() - started, 1)})
        return baseline, _read_json(info_path)["wall_time_s"]

    def fresh_baseline_model(self, model_name, baseline, seed):
        """A new prunable copy of the trained baseline, compiled with the recipe.

        Built as `train_baseline` built it (zoo model, `make_prunable`,
        seeded) and given the trained weights, so that every method of a
        study starts from the same model, initial random state included.
        (`keras.models.load_model` of the baseline would also do: rewind
        checkpoints restore by position, and the tests check that.)
        """
        import keras
        from tf_asap.core.masks import make_prunable
        from tf_asap.recipe import compile_with_recipe
        from tf_asap.zoo import build_model

        trained = keras.models.load_model(baseline.final_model_path, compile=False)
        keras.utils.set_random_seed(seed)
        model = make_prunable(build_model(model_name))
        model.set_weights(trained.get_weights())
        steps = int(self.train_data(seed).cardinality().numpy())
        return compile_with_recipe(model, baseline.epochs, steps, from_logits=False,
                                   learning_rate=self.budget.learning_rate)

    # -- result files
    def result_path(self, study, model_name, method, seed):
        return os.path.join(self.runs, study, f"{model_name}__{method}__s{seed}.json")

    def load_result(self, study, model_name, method, seed):
        path = self.result_path(study, model_name, method, seed)
        return _read_json(path) if os.path.exists(path) else None

    def save_result(self, study, model_name, method, seed, result):
        result = dict(result, study=study, model=model_name, method=method, seed=seed,
                      budget=self.budget.name,
                      finished=datetime.datetime.now().isoformat(timespec="seconds"))
        _write_json(self.result_path(study, model_name, method, seed), result)
        return result


def _write_json(path, value):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = path + ".tmp"
    with open(temporary, "w", encoding="utf-8") as file:
        json.dump(value, file, indent=2, sort_keys=True, default=float)
        file.write("\n")
    os.replace(temporary, path)


def _read_json(path):
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _say(text):
    print(f"[{datetime.datetime.now():%H:%M:%S}] {text}", flush=True)


def _selected(names, wanted):
    return [name for name in names if not wanted or name in wanted]


# ---------------------------------------------------------------------------
# Pieces shared by the studies.


def _criterion(method):
    """The `tf_asap.pruning.importance` criterion of a method name of this harness."""
    from tf_asap import importance

    if method in ("attention", "l1"):
        return importance.get_criterion(method)
    if method == "random":
        return importance.RandomScore(seed=0)
    mapping, power = method.split("-p")
    return importance.ActivationAttention(power=float(power), mapping=mapping)


def _policy(name, budget):
    from tf_asap.pruning.policies import AccuracyGuaranteed, FlopsTarget, ParamsTarget

    rounds = {"max_rounds": budget.max_rounds, "step": budget.policy_step}
    if name == "acc0":
        return AccuracyGuaranteed(max_accuracy_drop=0.0, **rounds)
    if name == "acc1":
        return AccuracyGuaranteed(max_accuracy_drop=0.01, **rounds)
    if name == "params70":
        return ParamsTarget(reduction=0.7, **rounds)
    if name == "flops50":
        return FlopsTarget(reduction=0.5, **rounds)
    raise ValueError(f"Unknown policy {name!r}; expected one of {ADAPTIVE_POLICIES}.")


def _evaluate(model, validation):
    logs = model.evaluate(validation, verbose=0, return_dict=True)
    return float(logs["accuracy"])


def _rewind_and_retrain(model, baseline, train):
    """Rewinds weights and optimizer to epoch k (masks kept) and retrains `T - k` epochs.

    The same rewinding the controller does with a rewind checkpoint
    (Algorithm 1, lines 6-8), so fixed-rate and one-shot methods get exactly
    the retraining the adaptive runs get.
    """
    from tf_asap.rounds.controller import load_state, restore_state

    state, _ = load_state(baseline.rewind_checkpoint)
    restore_state(model, state, masks=False)
    model.fit(train, epochs=baseline.epochs, initial_epoch=baseline.rewind_epoch, verbose=0)


def _apply_fraction(model, scores, fraction, scope):
    from tf_asap.core.masks import apply_masks
    from tf_asap.pruning.thresholds import ratio_masks

    masks = ratio_masks(model, scores, fraction, scope=scope)
    apply_masks(model, masks)
    return masks


def _prune_to_params_reduction(model, scores, target, scope="global", tolerance=0.005):
    """Finds by bisection the filter fraction whose masks remove `target` of the params."""
    from tf_asap.core.counting import count_cost
    from tf_asap.core.masks import apply_masks, get_masks

    original = get_masks(model)
    dense_params = count_cost(model).effective_params
    low, high = 0.0, 0.99
    best = None
    for _ in range(20):
        fraction = (low + high) / 2
        apply_masks(model, original)
        _apply_fraction(model, scores, fraction, scope)
        reduction = 1.0 - count_cost(model).effective_params / dense_params
        if best is None or abs(reduction - target) < abs(best[1] - target):
            best = (fraction, reduction)
        if abs(reduction - target) <= tolerance:
            break
        if reduction < target:
            low = fraction
        else:
            high = fraction
    apply_masks(model, original)
    _apply_fraction(model, scores, best[0], scope)
    return best


def _cost_summary(model, baseline_cost):
    from tf_asap.core.counting import count_cost

    cost = count_cost(model)
    return {
        "params": cost.effective_params,
        "flops": cost.effective_flops,
        "params_reduction": 1.0 - cost.effective_params / baseline_cost.effective_params,
        "flops_reduction": 1.0 - cost.effective_flops / baseline_cost.effective_flops,
    }


# ---------------------------------------------------------------------------
# Study 1: adaptive policies, attention vs L1 (Table 1 analog).


def _adaptive_run_dir(context, model_name, method, seed):
    return os.path.join(context.work, "adaptive", f"{model_name}__{method}__s{seed}")


def run_adaptive_case(context, model_name, method, seed):
    """One adaptive run: a policy with a criterion, through `RoundController`."""
    done = context.load_result("adaptive", model_name, method, seed)
    if done is not None:
        return done
    from tf_asap.rounds.controller import RoundController

    policy_name, criterion_name = method.split("-")
    baseline, baseline_wall = context.baseline(model_name, seed)
    _say(f"adaptive {model_name} {method} seed {seed}: baseline accuracy "
         f"{100 * baseline.accuracy:.2f}%")
    train = context.train_data(seed)
    steps = int(train.cardinality().numpy())
    from tf_asap.recipe import paper_optimizer

    controller = RoundController(
        context.fresh_baseline_model(model_name, baseline, seed), _policy(policy_name, context.budget),
        train, context.validation_data(),
        run_dir=_adaptive_run_dir(context, model_name, method, seed),
        epochs=baseline.epochs, rewind_epoch=baseline.rewind_epoch,
        rewind_checkpoint=baseline.rewind_checkpoint,
        calibration_data=context.calibration_data(),
        criterion=_criterion(criterion_name),
        optimizer=paper_optimizer(baseline.epochs, steps,
                                  learning_rate=context.budget.learning_rate),
        verbose=context.verbose,
    )
    result = controller.run()
    rounds = result.rounds
    best = result.best
    pruning_rounds = [r for r in rounds if r["round"] > 0]
    outcome = {
        "baseline_accuracy": rounds[0]["accuracy"],
        "accuracy": best["accuracy"],
        "accuracy_drop": best["accuracy_drop"],
        "params_reduction": best["params_reduction"],
        "flops_reduction": best["flops_reduction"],
        "best_round": result.best_round,
        "rounds": len(pruning_rounds),
        "pruning_epochs": sum(r.get("epochs", 0) for r in pruning_rounds),
        "total_epochs": baseline.epochs + sum(r.get("epochs", 0) for r in pruning_rounds),
        "wall_time_s": sum(r.get("wall_time_s", 0.0) for r in rounds),
        "baseline_wall_time_s": baseline_wall,
        "policy_met": _policy_met(policy_name, best),
        "run_dir": os.path.relpath(result.run_dir, HERE),
    }
    return context.save_result("adaptive", model_name, method, seed, outcome)


def _policy_met(policy_name, best):
    if policy_name == "acc0":
        return best["accuracy_drop"] <= 1e-9
    if policy_name == "acc1":
        return best["accuracy_drop"] <= 0.01 + 1e-9
    if policy_name == "params70":
        return 0.7 - 1e-9 <= best["params_reduction"] <= 0.73 + 1e-9
    return 0.5 - 1e-9 <= best["flops_reduction"] <= 0.53 + 1e-9


def study_adaptive(context, models, methods):
    all_methods = [f"{p}-{c}" for p in ADAPTIVE_POLICIES for c in ADAPTIVE_CRITERIA]
    if context.budget.name == "quick" and not methods:
        methods = QUICK_METHODS["adaptive"]
    results = _run_cases(context, "adaptive", models, _selected(all_methods, methods),
                         run_adaptive_case)
    rows = []
    for (model_name, method), group in _grouped(results).items():
        rows.append([
            model_name, method, _seeds_cell(group),
            _mean_cell(group, "baseline_accuracy"),
            _mean_cell(group, "accuracy_drop"),
            _mean_cell(group, "params_reduction"),
            _mean_cell(group, "flops_reduction"),
            _mean_cell(group, "rounds", percent=False, digits=1),
            _mean_cell(group, "total_epochs", percent=False, digits=1),
            _mean_cell(group, "wall_time_s", percent=False, digits=0),
            "/".join("yes" if r["policy_met"] else "no" for r in group),
        ])
    header = ["model", "policy-criterion", "seeds", "baseline acc", "acc drop",
              "params red.", "FLOPs red.", "rounds", "total epochs", "wall s (pruning)",
              "policy met"]
    goal = _goal_attention_vs_l1(results)
    notes = [goal] if goal else []
    _plot_bars(context, "adaptive", results, "params_reduction",
               "params reduction (best acceptable round)")
    return header, rows, notes


def _goal_attention_vs_l1(results):
    """Goal: at 0% drop attention removes >= 10 points more params than L1 (ResNet-style)."""
    lines = []
    for model_name in sorted({r["model"] for r in results}):
        by_method = {}
        for r in results:
            if r["model"] == model_name:
                by_method.setdefault(r["method"], {})[r["seed"]] = r["params_reduction"]
        if "acc0-attention" in by_method and "acc0-l1" in by_method:
            attention, l1 = by_method["acc0-attention"], by_method["acc0-l1"]
            gap = 100 * (sum(attention.values()) / len(attention) - sum(l1.values()) / len(l1))
            verdict = "MET" if gap >= 10 else "NOT MET"
            seeds = sorted(set(attention) & set(l1))
            per_seed = ""
            if len(seeds) > 1:
                per_seed = " (per seed: " + ", ".join(
                    f"{100 * (attention[s] - l1[s]):+.1f}" for s in seeds) + ")"
            lines.append(f"{model_name}: at 0% drop attention removes {gap:+.1f} points of "
                         f"params vs L1{per_seed} (goal >= +10 on the ResNet-style model): "
                         f"{verdict}")
    return "; ".join(lines)


# ---------------------------------------------------------------------------
# Study 2: mapping ablation, one-shot (Table 3 analog).


def run_mapping_case(context, model_name, method, seed):
    done = context.load_result("mapping", model_name, method, seed)
    if done is not None:
        return done
    import keras
    from tf_asap.core.counting import count_cost

    baseline, _ = context.baseline(model_name, seed)
    keras.utils.set_random_seed(seed)
    model = context.fresh_baseline_model(model_name, baseline, seed)
    validation = context.validation_data()
    baseline_cost = count_cost(model)
    started = time.monotonic()
    scores = _criterion(method).score(model, context.calibration_data())
    fraction, reduction = _prune_to_params_reduction(
        model, scores, MAPPING_PARAMS_REDUCTION, scope="global"
    )
    accuracy_pruned = _evaluate(model, validation)
    _rewind_and_retrain(model, baseline, context.train_data(seed))
    accuracy = _evaluate(model, validation)
    outcome = dict(
        _cost_summary(model, baseline_cost),
        baseline_accuracy=baseline.accuracy,
        filter_fraction=fraction,
        accuracy_before_finetune=accuracy_pruned,
        accuracy=accuracy,
        accuracy_drop=baseline.accuracy - accuracy,
        finetune_epochs=baseline.epochs - baseline.rewind_epoch,
        wall_time_s=round(time.monotonic() - started, 1),
    )
    _say(f"mapping {model_name} {method} seed {seed}: params -{100 * reduction:.1f}%, "
         f"accuracy {100 * accuracy:.2f}%")
    return context.save_result("mapping", model_name, method, seed, outcome)


def study_mapping(context, models, methods):
    if context.budget.name == "quick" and not methods:
        methods = QUICK_METHODS["mapping"]
    results = _run_cases(context, "mapping", models, _selected(MAPPING_METHODS, methods),
                         run_mapping_case)
    rows = []
    for (model_name, method), group in _grouped(results).items():
        rows.append([
            model_name, method, _seeds_cell(group),
            _mean_cell(group, "params_reduction"), _mean_cell(group, "flops_reduction"),
            _mean_cell(group, "accuracy_before_finetune"), _mean_cell(group, "accuracy"),
            _mean_cell(group, "accuracy_drop"),
        ])
    header = ["model", "criterion", "seeds", "params red.", "FLOPs red.",
              "acc after pruning", "acc after fine-tuning", "acc drop"]
    notes = [f"One-shot: every criterion prunes the baseline to "
             f"{100 * MAPPING_PARAMS_REDUCTION:.0f}% params reduction with one global "
             "ranking (`ratio_masks(scope='global')`, fraction found by bisection), "
             "then rewinds to epoch k and retrains T-k epochs."]
    _plot_bars(context, "mapping", results, "accuracy", "accuracy after fine-tuning")
    return header, rows, notes


# ---------------------------------------------------------------------------
# Study 3: fixed-rate IAP / ILP vs adaptive (Table 4 analog).


def run_fixed_rate_case(context, model_name, method, seed):
    done = context.load_result("fixed-rate", model_name, method, seed)
    if done is not None:
        return done
    import keras
    from tf_asap.core.counting import count_cost

    reference = run_adaptive_case(context, model_name, FIXED_RATE_REFERENCE, seed)
    target = reference["params_reduction"]
    baseline, _ = context.baseline(model_name, seed)
    keras.utils.set_random_seed(seed)
    model = context.fresh_baseline_model(model_name, baseline, seed)
    validation = context.validation_data()
    train = context.train_data(seed)
    baseline_cost = count_cost(model)
    criterion = _criterion("attention" if method == "IAP" else "l1")
    trace = []
    started = time.monotonic()
    reduction = 0.0
    round_number = 0
    # Each round removes 5% of the remaining filters of every layer (the
    # paper's IAP / ILP; `scope="group"` keeps raw L1 norms of layers with
    # different fan-in from being compared), on top of the earlier rounds'
    # masks; then rewind and retrain exactly as the adaptive rounds do.
    # At least one round, so that a target of 0 (an adaptive run that pruned
    # nothing) still compares one fixed-rate round with it.
    while round_number < context.budget.fixed_rate_max_rounds and (
        round_number == 0 or reduction < target - 1e-9
    ):
        round_number += 1
        scores = criterion.score(model, context.calibration_data())
        _apply_fraction(model, scores, FIXED_RATE, "group")
        _rewind_and_retrain(model, baseline, train)
        accuracy = _evaluate(model, validation)
        summary = _cost_summary(model, baseline_cost)
        reduction = summary["params_reduction"]
        trace.append(dict(summary, round=round_number, accuracy=accuracy,
                          accuracy_drop=baseline.accuracy - accuracy))
        _say(f"fixed-rate {model_name} {method} round {round_number}: params "
             f"-{100 * reduction:.1f}% (target {100 * target:.1f}%), accuracy "
             f"{100 * accuracy:.2f}%")
    last = trace[-1] if trace else {"accuracy": baseline.accuracy, "accuracy_drop": 0.0,
                                    "params_reduction": 0.0, "flops_reduction": 0.0}
    outcome = {
        "baseline_accuracy": baseline.accuracy,
        "target_params_reduction": target,
        "reached_target": reduction >= target - 1e-9,
        "accuracy": last["accuracy"],
        "accuracy_drop": last["accuracy_drop"],
        "params_reduction": last["params_reduction"],
        "flops_reduction": last["flops_reduction"],
        "rounds": round_number,
        "total_epochs": baseline.epochs + round_number * (baseline.epochs - baseline.rewind_epoch),
        "wall_time_s": round(time.monotonic() - started, 1),
        "adaptive_accuracy_drop": reference["accuracy_drop"],
        "adaptive_rounds": reference["rounds"],
        "adaptive_total_epochs": reference["total_epochs"],
        "trace": trace,
    }
    return context.save_result("fixed-rate", model_name, method, seed, outcome)


def study_fixed_rate(context, models, methods):
    results = _run_cases(context, "fixed-rate", models, _selected(("IAP", "ILP"), methods),
                         run_fixed_rate_case)
    rows, verdicts = [], []
    for (model_name, method), group in _grouped(results).items():
        rows.append([
            model_name, f"{method} (5%/round)", _seeds_cell(group),
            _mean_cell(group, "target_params_reduction"),
            _mean_cell(group, "params_reduction"), _mean_cell(group, "accuracy_drop"),
            _mean_cell(group, "rounds", percent=False, digits=1),
            _mean_cell(group, "total_epochs", percent=False, digits=1),
            _mean_cell(group, "adaptive_accuracy_drop"),
            _mean_cell(group, "adaptive_total_epochs", percent=False, digits=1),
            "/".join("yes" if r["reached_target"] else "no" for r in group),
        ])
        at_target = [_drop_at_reduction(r["trace"], r["target_params_reduction"]) for r in group]
        rows[-1].insert(6, ", ".join("n/a" if d is None else _pretty(d) for d in at_target))
        if any(d is None for d in at_target) or group[0]["target_params_reduction"] < 0.01:
            verdict = ("NOT MEASURED (the adaptive run pruned nothing, or the fixed-rate run "
                       "never reached its reduction)")
        else:
            beaten = all(r["adaptive_accuracy_drop"] < d for r, d in zip(group, at_target))
            verdict = "MET" if beaten else "NOT MET"
        verdicts.append(f"{model_name}, adaptive vs {method} at equal params reduction "
                        f"(goal: adaptive loses less accuracy): {verdict}")
    header = ["model", "method", "seeds", "target params red. (adaptive)",
              "reached params red.", "acc drop", "acc drop at target (interpolated)",
              "rounds", "total epochs",
              f"adaptive ({FIXED_RATE_REFERENCE}) acc drop", "adaptive total epochs",
              "reached target"]
    notes = [f"Target: the params reduction of the adaptive `{FIXED_RATE_REFERENCE}` run of "
             "the same model and seed. Fixed-rate methods remove 5% of each layer's "
             "remaining filters per round (`ratio_masks(scope='group')`), rewinding "
             "and retraining like the adaptive rounds, until they reach it."] + verdicts
    _plot_fixed_rate(context, results)
    return header, rows, notes


def _drop_at_reduction(trace, target):
    """Accuracy drop of a fixed-rate trace at `target` params reduction.

    Linear interpolation between the rounds just below and just above the
    target (the unpruned baseline is the point (0, 0)); `None` if the trace
    never reaches it.
    """
    points = [(0.0, 0.0)] + [(t["params_reduction"], t["accuracy_drop"]) for t in trace]
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 <= target <= x1:
            return y1 if x1 == x0 else y0 + (y1 - y0) * (target - x0) / (x1 - x0)
    return None


# ---------------------------------------------------------------------------
# Study 4: structured (ours) vs unstructured (tfmot).


def _layer_spec(model):
    """A framework-neutral description of a plain functional Keras 3 model.

    Only the hyper-parameters that change what a layer computes are kept;
    initialisers and regularisers are dropped because the weights are copied.
    The graph comes from the public `layer.input` of each layer.
    """
    keep = {
        "Conv2D": ("filters", "kernel_size", "strides", "padding", "use_bias",
                   "activation", "dilation_rate", "groups"),
        "DepthwiseConv2D": ("kernel_size", "strides", "padding", "use_bias",
                            "activation", "depth_multiplier"),
        "Dense": ("units", "activation", "use_bias"),
        "BatchNormalization": ("axis", "momentum", "epsilon", "center", "scale"),
        "ReLU": ("max_value", "negative_slope", "threshold"),
        "Activation": ("activation",),
        "Add": (),
        "MaxPooling2D": ("pool_size", "strides", "padding"),
        "AveragePooling2D": ("pool_size", "strides", "padding"),
        "GlobalAveragePooling2D": (),
        "Flatten": (),
        "Dropout": ("rate",),
    }
    layers = []
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "InputLayer":
            layers.append({"name": layer.name, "class_name": "InputLayer",
                           "shape": list(layer.output.shape[1:]), "inputs": []})
            continue
        if kind not in keep:
            raise ValueError(f"The unstructured baseline cannot translate layer "
                             f"'{layer.name}' of type {kind}; supported: {sorted(keep)}.")
        config = layer.get_config()
        inputs = layer.input if isinstance(layer.input, (list, tuple)) else [layer.input]
        layers.append({
            "name": layer.name, "class_name": kind,
            "config": {key: config[key] for key in keep[kind] if key in config},
            "inputs": [tensor._keras_history[0].name for tensor in inputs],
        })
    return {"layers": layers, "output": model.outputs[0]._keras_history[0].name}


def _ensure_baseline_packages():
    if os.path.isdir(os.path.join(BASELINES_SITE, "tensorflow_model_optimization")):
        return
    _say(f"installing {' '.join(BASELINE_PACKAGES)} into {BASELINES_SITE} "
         "(kept out of the main environment)")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--target",
                    BASELINES_SITE, *BASELINE_PACKAGES], check=True)


def _kernel_params(model):
    return sum(int(w.numpy().size) for layer in model.layers for w in layer.weights
               if w.name == "kernel" or w.path.endswith("/kernel"))


def run_unstructured_case(context, model_name, method, seed):
    done = context.load_result("unstructured", model_name, method, seed)
    if done is not None:
        return done
    import keras
    import numpy as np
    from tf_asap.core.counting import count_cost
    from tf_asap.export import evaluate_tflite, export_tflite, latency_report
    from tf_asap.core.masks import strip_masks

    reference = run_adaptive_case(context, model_name, UNSTRUCTURED_REFERENCE, seed)
    run_dir = os.path.join(HERE, reference["run_dir"])
    baseline, _ = context.baseline(model_name, seed)
    dense = strip_masks(context.fresh_baseline_model(model_name, baseline, seed))
    slim_model = keras.models.load_model(os.path.join(run_dir, "final", "slim.keras"))
    dense_cost, slim_cost = count_cost(dense), count_cost(slim_model)
    params_reduction = 1.0 - slim_cost.params / dense_cost.params
    # tfmot zeroes kernel entries only; the sparsity that removes the same
    # number of parameters from the whole model:
    sparsity = min(params_reduction * dense_cost.params / _kernel_params(dense), 0.99)

    work = os.path.join(context.work, "unstructured", f"{model_name}__s{seed}")
    os.makedirs(work, exist_ok=True)
    x_val, y_val = context.validation_arrays()
    x_train, y_train = _train_arrays(context, seed)
    np.savez(os.path.join(work, "data.npz"), x_train=x_train, y_train=y_train,
             x_val=x_val, y_val=y_val)
    np.savez(os.path.join(work, "weights.npz"), **{
        f"{layer.name}/{i}": weight for layer in dense.layers
        for i, weight in enumerate(layer.get_weights())
    })
    probe = x_val[:64]
    np.save(os.path.join(work, "probe_keras3.npy"), np.asarray(dense(probe, training=False)))
    spec = {
        "model": _layer_spec(dense), "sparsity": sparsity,
        "epochs": baseline.epochs - baseline.rewind_epoch,
        "batch_size": context.budget.batch_size,
        # The paper's schedule is at lr/10 by epoch k (60% of training,
        # past the 50% boundary): fine-tune at that rate.
        "learning_rate": context.budget.learning_rate / 10, "seed": seed,
        "work": work,
    }
    _write_json(os.path.join(work, "spec.json"), spec)
    _ensure_baseline_packages()
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [BASELINES_SITE] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else [])
    ), TF_USE_LEGACY_KERAS="1")
    _say(f"unstructured {model_name} seed {seed}: tfmot at sparsity {100 * sparsity:.1f}% "
         f"of kernels (= {100 * params_reduction:.1f}% of params), in a subprocess")
    started = time.monotonic()
    completed = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "_tfmot-worker",
         os.path.join(work, "spec.json")],
        env=environment, capture_output=True, text=True,
    )
    if completed.returncode != 0:
        raise RuntimeError("The tfmot worker failed:\n" + completed.stderr[-4000:])
    tfmot = _read_json(os.path.join(work, "tfmot.json"))
    tfmot_wall = round(time.monotonic() - started, 1)

    slim_path = export_tflite(slim_model, os.path.join(work, "slim.tflite"))
    dense_path = export_tflite(dense, os.path.join(work, "dense.tflite"))
    sparse_path = os.path.join(work, "tfmot.tflite")
    rows = latency_report(
        {"dense": dense_path, "tf_asap slim": slim_path, "tfmot sparse": sparse_path},
        costs={"dense": dense_cost, "tf_asap slim": slim_cost,
               "tfmot sparse": (dense_cost.params, dense_cost.flops)},
        num_runs=context.budget.latency_runs, seed=seed,
    )
    by_name = {row.name: row for row in rows}
    slim_accuracy = evaluate_tflite(slim_path, x_val, y_val)
    outcome = {
        "baseline_accuracy": baseline.accuracy,
        "params_reduction": params_reduction,
        "flops_reduction": 1.0 - slim_cost.flops / dense_cost.flops,
        "tfmot_kernel_sparsity": sparsity,
        "tfmot_copy_max_abs_diff": tfmot["copy_max_abs_diff"],
        "tfmot_accuracy": tfmot["accuracy"],
        "tfmot_measured_sparsity": tfmot["measured_sparsity"],
        "tfmot_wall_time_s": tfmot_wall,
        "ours_accuracy": reference["accuracy"],
        "ours_tflite_accuracy": slim_accuracy,
        "sizes_bytes": {name: row.size_bytes for name, row in by_name.items()},
        "gzip_bytes": {name: len(gzip.compress(open(path, "rb").read(), 9))
                       for name, path in (("dense", dense_path), ("tf_asap slim", slim_path),
                                          ("tfmot sparse", sparse_path))},
        "latency_ms": {name: row.latency_ms for name, row in by_name.items()},
        "latency_p10_ms": {name: row.latency_p10_ms for name, row in by_name.items()},
        "latency_p90_ms": {name: row.latency_p90_ms for name, row in by_name.items()},
        "speedup": {name: row.speedup for name, row in by_name.items()},
        "flops_ratio": dense_cost.flops / slim_cost.flops,
        "latency_runs": context.budget.latency_runs,
    }
    outcome["slim_speedup_over_flops_ratio"] = (
        outcome["speedup"]["tf_asap slim"] / outcome["flops_ratio"]
    )
    return context.save_result("unstructured", model_name, method, seed, outcome)


def _train_arrays(context, seed):
    from tf_asap.data import load_arrays

    return load_arrays(context.budget.dataset, "train", limit=context.budget.train_limit,
                       data_dir=context.data_dir)


def study_unstructured(context, models, methods):
    results = _run_cases(context, "unstructured", models, ["tfmot-vs-slim"],
                         run_unstructured_case)
    rows, verdicts = [], []
    for r in results:
        for name, accuracy in (("dense baseline", r["baseline_accuracy"]),
                               ("tf_asap slim (ours)", r["ours_accuracy"]),
                               ("tfmot prune_low_magnitude", r["tfmot_accuracy"])):
            key = {"dense baseline": "dense", "tf_asap slim (ours)": "tf_asap slim",
                   "tfmot prune_low_magnitude": "tfmot sparse"}[name]
            rows.append([
                r["model"], r["seed"], name, _pretty(accuracy),
                "0.00%" if key == "dense" else _pretty(r["params_reduction"]),
                f"{r['sizes_bytes'][key] / 1024:.1f}", f"{r['gzip_bytes'][key] / 1024:.1f}",
                f"{r['latency_ms'][key]:.3f} ({r['latency_p10_ms'][key]:.3f}-"
                f"{r['latency_p90_ms'][key]:.3f})",
                f"{r['speedup'][key]:.2f}x",
            ])
        pruned = r["flops_ratio"] >= 1.05
        slim_ok = r["slim_speedup_over_flops_ratio"] >= 0.8
        tfmot_none = r["speedup"]["tfmot sparse"] < 1.1
        slim_verdict = ("MET" if slim_ok else "NOT MET") if pruned else (
            "NOT MEASURED: the reference run removed no FLOPs")
        tfmot_verdict = ("MET" if tfmot_none else "NOT MET") if pruned else "NOT MEASURED"
        verdicts.append(
            f"{r['model']} seed {r['seed']}: slim speedup {r['speedup']['tf_asap slim']:.2f}x "
            f"vs FLOPs ratio {r['flops_ratio']:.2f}x = {100 * r['slim_speedup_over_flops_ratio']:.0f}% "
            f"(goal >= 80%: {slim_verdict}); tfmot speedup "
            f"{r['speedup']['tfmot sparse']:.2f}x (goal: no speedup: "
            f"{tfmot_verdict}); tf_keras copy matched Keras 3 to "
            f"{r['tfmot_copy_max_abs_diff']:.1e}; tfmot measured kernel sparsity "
            f"{100 * r['tfmot_measured_sparsity']:.1f}%; our .tflite accuracy "
            f"{100 * r['ours_tflite_accuracy']:.2f}%")
    header = ["model", "seed", "model variant", "accuracy", "params red.", ".tflite KiB",
              "gzip KiB", "batch-1 LiteRT ms, median (p10-p90)", "speedup"]
    notes = ["Same params reduction: ours from the adaptive "
             f"`{UNSTRUCTURED_REFERENCE}` run (slimmed); tfmot zeroes the same number of "
             "parameters in Conv2D/Dense kernels of a tf_keras copy of the same "
             "architecture and baseline weights, fine-tuned T-k epochs (ConstantSparsity, "
             "frequency 1, SGD at lr/10), then strip_pruning. Latency: LiteRT, 1 thread, "
             "XNNPACK, interleaved runs; the CPU is shared, so timings are noisy."] + verdicts
    _plot_unstructured(context, results)
    return header, rows, notes


def tfmot_worker(spec_path):
    """Runs in a subprocess with TF_USE_LEGACY_KERAS=1: never imports tf_asap."""
    import numpy as np
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    spec = _read_json(spec_path)
    work = spec["work"]
    tf_keras.utils.set_random_seed(spec["seed"])
    tensors = {}
    model_spec = spec["model"]
    for layer_spec in model_spec["layers"]:
        if layer_spec["class_name"] == "InputLayer":
            tensors[layer_spec["name"]] = tf_keras.Input(
                shape=tuple(layer_spec["shape"]), name=layer_spec["name"])
            continue
        layer = getattr(tf_keras.layers, layer_spec["class_name"])(
            name=layer_spec["name"], **layer_spec["config"])
        inputs = [tensors[name] for name in layer_spec["inputs"]]
        tensors[layer_spec["name"]] = layer(inputs if len(inputs) > 1 else inputs[0])
    inputs = [tensors[l["name"]] for l in model_spec["layers"] if l["class_name"] == "InputLayer"]
    model = tf_keras.Model(inputs, tensors[model_spec["output"]])
    weights = np.load(os.path.join(work, "weights.npz"))
    for layer in model.layers:
        count = len(layer.get_weights())
        if count:
            layer.set_weights([weights[f"{layer.name}/{i}"] for i in range(count)])
    data = np.load(os.path.join(work, "data.npz"))
    probe = np.load(os.path.join(work, "probe_keras3.npy"))
    copy_diff = float(np.max(np.abs(model(data["x_val"][:64], training=False).numpy() - probe)))

    steps = int(np.ceil(len(data["x_train"]) / spec["batch_size"]))
    schedule = tfmot.sparsity.keras.ConstantSparsity(
        spec["sparsity"], begin_step=0, frequency=1)
    pruned = tfmot.sparsity.keras.prune_low_magnitude(model, pruning_schedule=schedule)
    pruned.compile(
        optimizer=tf_keras.optimizers.SGD(spec["learning_rate"], momentum=0.9, nesterov=True),
        loss=tf_keras.losses.SparseCategoricalCrossentropy(),
        metrics=["accuracy"])
    pruned.fit(data["x_train"], data["y_train"], batch_size=spec["batch_size"],
               epochs=spec["epochs"], steps_per_epoch=steps, verbose=0,
               callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = tfmot.sparsity.keras.strip_pruning(pruned)
    stripped.compile(loss=tf_keras.losses.SparseCategoricalCrossentropy(), metrics=["accuracy"])
    _, accuracy = stripped.evaluate(data["x_val"], data["y_val"], verbose=0)
    kernels = [w.numpy() for w in stripped.weights if "kernel" in w.name]
    zeros = sum(int((k == 0).sum()) for k in kernels)
    total = sum(k.size for k in kernels)
    converter = tf.lite.TFLiteConverter.from_keras_model(stripped)
    with open(os.path.join(work, "tfmot.tflite"), "wb") as file:
        file.write(converter.convert())
    _write_json(os.path.join(work, "tfmot.json"), {
        "accuracy": float(accuracy), "copy_max_abs_diff": copy_diff,
        "measured_sparsity": zeros / total,
    })


# ---------------------------------------------------------------------------
# Study 5: round trace (Figure 4 analog).


def study_trace(context, models, methods):
    from tf_asap.rounds.controller import read_round_log

    model_name = (models or [context.budget.models[0]])[0]
    seed = context.seeds[0]
    method = (methods or [REFERENCE_METHOD])[0]
    reference = run_adaptive_case(context, model_name, method, seed)
    records = read_round_log(os.path.join(HERE, reference["run_dir"]))
    rows = [[
        r["round"], f"{r['threshold']:.3f}", _pretty(r["accuracy"]),
        _pretty(r["accuracy_drop"]), _pretty(r["params_reduction"]),
        _pretty(r["flops_reduction"]), "yes" if r["acceptable"] else "no",
        r["decision"] + (f" to {r['rollback_to']}" if r.get("rollback_to") is not None else ""),
    ] for r in records]
    header = ["round", "T", "accuracy", "acc drop", "params red.", "FLOPs red.",
              "acceptable", "decision"]
    notes = [f"{model_name}, `{method}`, seed {seed}; best round {reference['best_round']}."]
    from tf_asap.rounds.report import plot_rounds

    # The library's own Figure 4 plot (rollbacks and the best round marked).
    plot_rounds(records, os.path.join(context.results, "trace.png"),
                title=f"{model_name} {method} seed {seed} ({context.budget.name} budget)")
    context.save_result("trace", model_name, method, seed, {"rounds": records})
    return header, rows, notes


# ---------------------------------------------------------------------------
# Running cases, tables, plots, RESULTS.md.


def _run_cases(context, study, models, methods, run_case):
    results = []
    for model_name in models:
        for method in methods:
            for seed in context.seeds:
                if context.load_result(study, model_name, method, seed) is not None:
                    _say(f"{study} {model_name} {method} seed {seed}: done, skipped")
                results.append(run_case(context, model_name, method, seed))
    return results


def _grouped(results):
    groups = {}
    for r in results:
        groups.setdefault((r["model"], r["method"]), []).append(r)
    return groups


def _seeds_cell(group):
    return ",".join(str(r["seed"]) for r in group)


def _mean_cell(group, key, percent=True, digits=2):
    values = [r[key] for r in group if r.get(key) is not None]
    if not values:
        return "n/a"
    mean = sum(values) / len(values)
    spread = max(values) - min(values)
    if percent:
        text = f"{100 * mean:.{digits}f}%"
        return text + (f" ±{100 * spread / 2:.{digits}f}" if len(values) > 1 else "")
    text = f"{mean:.{digits}f}" if digits else f"{mean:.0f}"
    return text + (f" ±{spread / 2:.{digits}f}" if len(values) > 1 else "")


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _machine():
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} CPU cores ({cpu}), {platform.system()}"


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _plot_bars(context, study, results, key, label):
    plt = _figure()
    groups = _grouped(results)
    models = sorted({m for m, _ in groups})
    figure, axes = plt.subplots(1, max(len(models), 1), figsize=(6 * max(len(models), 1), 4),
                                squeeze=False)
    for axis, model_name in zip(axes[0], models):
        methods = [m for (mm, m) in groups if mm == model_name]
        values = [100 * sum(r[key] for r in groups[(model_name, m)]) /
                  len(groups[(model_name, m)]) for m in methods]
        axis.bar(range(len(methods)), values,
                 color=["tab:orange" if "attention" in m or "-p" in m else "tab:blue"
                        for m in methods])
        axis.set_xticks(range(len(methods)), methods, rotation=45, ha="right")
        axis.set_ylabel(f"{label} (%)")
        axis.set_title(f"{model_name} ({context.budget.name} budget)")
    figure.tight_layout()
    figure.savefig(os.path.join(context.results, f"{study}.png"), dpi=100)
    plt.close(figure)


def _plot_fixed_rate(context, results):
    plt = _figure()
    models = sorted({r["model"] for r in results})
    figure, axes = plt.subplots(1, max(len(models), 1), figsize=(6 * max(len(models), 1), 4),
                                squeeze=False)
    for axis, model_name in zip(axes[0], models):
        for r in results:
            if r["model"] != model_name:
                continue
            trace = r["trace"]
            axis.plot([100 * t["params_reduction"] for t in trace],
                      [100 * t["accuracy_drop"] for t in trace], "o-",
                      label=f"{r['method']} seed {r['seed']}")
            axis.plot([100 * r["target_params_reduction"]], [100 * r["adaptive_accuracy_drop"]],
                      "r*", markersize=14, label=f"adaptive seed {r['seed']}" )
        axis.set_xlabel("params reduction (%)")
        axis.set_ylabel("accuracy drop (points)")
        axis.set_title(f"{model_name}: fixed-rate vs adaptive")
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(context.results, "fixed-rate.png"), dpi=100)
    plt.close(figure)


def _plot_unstructured(context, results):
    plt = _figure()
    figure, axes = plt.subplots(1, 2, figsize=(10, 4))
    names = ["dense", "tf_asap slim", "tfmot sparse"]
    for index, r in enumerate(results):
        offset = (index - (len(results) - 1) / 2) * 0.8 / max(len(results), 1)
        label = f"{r['model']} s{r['seed']}"
        axes[0].bar([i + offset for i in range(3)], [r["latency_ms"][n] for n in names],
                    width=0.8 / max(len(results), 1), label=label)
        axes[1].bar([i + offset for i in range(3)], [r["gzip_bytes"][n] / 1024 for n in names],
                    width=0.8 / max(len(results), 1), label=label)
    for axis, label in zip(axes, ["batch-1 LiteRT latency (ms)", "gzipped .tflite (KiB)"]):
        axis.set_xticks(range(3), names)
        axis.set_ylabel(label)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(os.path.join(context.results, "unstructured.png"), dpi=100)
    plt.close(figure)


def _write_outputs(context, study, header, rows, notes, command, elapsed, record):
    today = datetime.date.today().isoformat()
    body = [
        f"Budget: **{context.budget.name}**: {context.budget.description}. "
        f"Seeds: {', '.join(map(str, context.seeds))}.",
        "",
        _markdown(header, rows),
        "",
        *[f"- {note}" for note in notes if note],
        "",
        f"Command: `{command}`  ",
        f"Machine: {_machine()}; shared with other jobs while measured, so wall times "
        f"and latencies are noisy. Date: {today}. This invocation took {elapsed:.0f} s "
        "(cases done earlier are reused, not re-timed).  ",
        f"Plot: `benchmarks/results/{context.budget.name}/{study}.png`.",
    ]
    text = "\n".join(body) + "\n"
    with open(os.path.join(context.results, f"{study}.md"), "w", encoding="utf-8") as file:
        file.write(f"# Study: {study}\n\n{text}")
    if record:
        with open(RESULTS_MD, "a", encoding="utf-8") as file:
            file.write(f"\n## Benchmarks (issue 7): {study}, {context.budget.name} budget, "
                       f"{today}\n\n{text}")
    print(_markdown(header, rows))
    for note in notes:
        print("-", note)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_tfmot-worker"]:
        tfmot_worker(argv[1])
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=STUDIES + ("all",))
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_true",
                      help="harness check on tiny data (<= 5 min on 2 cores)")
    size.add_argument("--paper", action="store_true",
                      help="CIFAR-10, ResNet-56/VGG-16, 182 epochs (GPU and internet)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--models", nargs="+", help="only these zoo models")
    parser.add_argument("--methods", nargs="+", help="only these methods of the study")
    parser.add_argument("--data-dir", help="where data sets are looked for first")
    parser.add_argument("--results-dir", default=RESULTS_DIR,
                        help="where tables, plots and per-case results go "
                        "(default: benchmarks/results)")
    parser.add_argument("--work-dir", default=WORK_DIR,
                        help="where baselines and run directories go (default: benchmarks/work)")
    parser.add_argument("--record", action="store_true",
                        help="append to RESULTS.md even with --quick")
    parser.add_argument("--no-record", action="store_true",
                        help="do not append to RESULTS.md")
    parser.add_argument("--verbose", type=int, default=0, choices=(0, 1, 2))
    args = parser.parse_args(argv)

    budget = BUDGETS["quick" if args.quick else "paper" if args.paper else "default"]
    context = Context(budget, args.seeds, data_dir=args.data_dir, verbose=args.verbose,
                      results_root=args.results_dir, work_root=args.work_dir)
    models = _selected(budget.models, args.models)
    record = not args.no_record and (args.record or not args.quick)
    command = "python benchmarks/studies.py " + " ".join(shlex.quote(a) for a in argv)
    studies = STUDIES if args.study == "all" else (args.study,)
    for name in studies:
        started = time.monotonic()
        study = {"adaptive": study_adaptive, "mapping": study_mapping,
                 "fixed-rate": study_fixed_rate, "unstructured": study_unstructured,
                 "trace": study_trace}[name]
        header, rows, notes = study(context, models, args.methods)
        _write_outputs(context, name, header, rows, notes, command,
                       time.monotonic() - started, record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
