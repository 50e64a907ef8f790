"""Budgets of the studies, and the methods each study compares."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Budget:
    """How much data and fine-tuning one budget spends.

    Every pruning method of every study fine-tunes the same way: after
    pruning, `finetune_epochs` epochs over `finetune_images` training images
    (never the held-out validation images). With `rewinding="lr"` the
    learning rate is rewound: the paper's schedule for `2 x finetune_epochs`
    epochs, started half-way, so fine-tuning runs at lr/10, then lr/100 (the
    pruned model keeps its converged weights). With `rewinding="weights"`
    (the paper's budget) the weights and optimizer go back to the
    baseline's epoch-k checkpoint and retrain `T - k` epochs (Algorithm 1).

    Attributes:
        name: `"quick"`, `"default"` or `"paper"`.
        description: One line for the tables.
        models: Default `tf_asap.zoo` models of the study.
        train_baseline: Train a tiny baseline into the work directory
            (`--quick` only) instead of loading a shipped one.
        baseline_images: Training images of that tiny baseline.
        baseline_epochs: Its epochs.
        validation_images: Held-out validation images decisions use
            (`None`: the whole held-out split).
        test_images: Test images reported (`None`: all).
        finetune_images: Training images of one fine-tuning epoch
            (`None`: the whole training part).
        finetune_epochs: Epochs of fine-tuning after each pruning step.
        rewinding: `"lr"` or `"weights"` (see above).
        calibration_samples: Training images the criteria score on.
        max_rounds: Cap on adaptive rounds.
        policy_step: Initial step of `T` of every adaptive policy.
        fixed_rate_max_rounds: Cap on fixed-rate rounds.
        oneshot_reductions: Params reductions the one-shot + fine-tune method
            of the Table-4 analog tries; the validation split picks one.
        latency_runs: Timed batch-1 LiteRT calls per model.
    """

    name: str
    description: str
    models: tuple
    train_baseline: bool = False
    baseline_images: int | None = None
    baseline_epochs: int = 2
    validation_images: int | None = None
    test_images: int | None = None
    finetune_images: int | None = None
    finetune_epochs: int = 2
    rewinding: str = "lr"
    calibration_samples: int = 1024
    max_rounds: int = 10
    policy_step: float = 0.25
    fixed_rate_max_rounds: int = 12
    oneshot_reductions: tuple = (0.3, 0.5, 0.7)
    latency_runs: int = 300

    @property
    def is_smoke_run(self):
        """Whether the numbers of this budget mean nothing (`--quick`)."""
        return self.name == "quick"


BUDGETS = {
    "quick": Budget(
        name="quick", models=("resnet_small",), train_baseline=True,
        baseline_images=1024, baseline_epochs=2, validation_images=512, test_images=512,
        finetune_images=1024, finetune_epochs=1, calibration_samples=256, max_rounds=2, policy_step=1.0,
        fixed_rate_max_rounds=2, oneshot_reductions=(0.5,), latency_runs=20,
        description="SMOKE RUN, not a result: a baseline trained on 1,024 images for 2 "
        "epochs, 512 validation and 512 test images, 1 fine-tuning epoch, 2 rounds",
    ),
    "default": Budget(
        name="default", models=("resnet_small", "vgg_small"), finetune_images=12000,
        finetune_epochs=2, calibration_samples=1024, max_rounds=10, fixed_rate_max_rounds=12,
        description="CPU budget: the shipped converged baseline; decisions on its held-out "
        "validation split (6,000 training images it never trained on), accuracy reported on "
        "all 10,000 test images; every pruning step is followed by 2 epochs of 12,000 "
        "training images at lr/10 then lr/100 (learning-rate rewinding); at most 10 rounds",
    ),
    "resnet20": Budget(
        name="resnet20", models=("resnet20",), finetune_images=12000, finetune_epochs=2,
        calibration_samples=1024, max_rounds=12, fixed_rate_max_rounds=16,
        description="resnet20 budget: the shipped converged resnet20 baseline, decisions on "
        "its held-out validation split, all 10,000 test images reported; 2 fine-tuning "
        "epochs of 12,000 images after each pruning step; at most 12 rounds",
    ),
    "paper": Budget(
        name="paper", models=("resnet56", "vgg16"), finetune_images=None, rewinding="weights",
        calibration_samples=2048, max_rounds=50, policy_step=0.1, fixed_rate_max_rounds=40,
        latency_runs=500,
        description="the paper's budget: CIFAR-10 baselines trained with `tf-asap train` "
        "(pass them with --baseline), weight rewinding to epoch k and T-k epochs of "
        "retraining on the whole training part",
    ),
}

STUDIES = ("adaptive", "mapping", "fixed-rate", "unstructured", "trace")

# Table-1 analog: policy x criterion. "l1" ranks per group (see
# `pruning.PerGroupNormalized`), as the paper's ILP ranks per layer.
ADAPTIVE_POLICIES = ("acc05", "acc1", "params70", "flops50")
ADAPTIVE_CRITERIA = ("attention", "l1")
# Table-3 analog: the attention mappings, L1 and random at one-shot 50% params.
MAPPING_METHODS = ("mean-p1", "mean-p2", "mean-p4", "max-p1", "sum-p1", "l1", "random")
MAPPING_PARAMS_REDUCTION = 0.5
# Table-4 analog: the methods matched to the adaptive run's wall time.
FIXED_RATE_METHODS = ("IAP", "ILP", "one-shot")
FIXED_RATE = 0.05
# The adaptive run the Table-4 analog and the trace build on, and the one the
# unstructured baseline is matched to (its reduction is set by design).
REFERENCE_METHOD = "acc1-attention"
UNSTRUCTURED_REFERENCE = "params70-attention"
# `--quick` checks the harness on a few cases only.
QUICK_METHODS = {
    "adaptive": ("acc1-attention", "acc1-l1", "params70-attention"),
    "mapping": ("mean-p1", "l1", "random"),
    "fixed-rate": ("IAP", "one-shot"),
}


def max_accuracy_drop(policy_name):
    """The accuracy bound of an accuracy policy name (`"acc05"` -> 0.005), or `None`."""
    bounds = {"acc05": 0.005, "acc1": 0.01}
    return bounds.get(policy_name)
