"""The engine's default settings, kept in one place.

The library's signatures and the command line's help read the same values,
so what `tf-asap prune --help` says a flag defaults to is what
`RoundController` does when the flag is left out. This module imports
nothing: the command line reads it before TensorFlow loads.
"""

VALIDATION_SPLIT = 0.1
"""Share of the training data held out for decisions when no validation data is given."""

CALIBRATION_SAMPLES = 2048
"""Training samples scored per round when no calibration data is given."""

MAX_FRACTION = 0.5
"""Largest share of a group's live channels one round removes (`None`: the paper's rule)."""

SCAN_SAMPLES = 512
"""Validation samples the bisect schedule's sensitivity scan evaluates each candidate on."""

SCHEDULE = "paper"
"""The threshold search: Algorithm 2 of the paper (`"bisect"` is the faster alternative)."""

RETRAIN = "slim"
"""Retrain the physically slimmed model (`"masked"`: the masked one, same result, slower)."""

FINAL_EPOCHS = 0
"""Epochs of fine-tuning of the chosen round after the search."""

DISTILL_ALPHA = 0.5
"""With distillation: weight of the task loss (`1 - alpha` weighs the soft targets)."""

DISTILL_TEMPERATURE = 4.0
"""With distillation: softmax temperature of the teacher's soft targets."""

MAX_ROUNDS = 50
"""Last pruning round of every policy."""

PATIENCE = 3
"""Rounds of unchanged size that end a policy's search."""

STEP_GROWTH = 1.0
"""Factor on the threshold step after a passing round (1: the paper's, a halved step stays halved)."""

SIZE_TOLERANCE = 0.02
"""With the bisect schedule: the size bracket (share of the baseline's cost) below which no trimmed retry is tried."""

TARGET_TOLERANCE = 0.03
"""How far beyond a params or FLOPs target still meets it."""

METRIC = "accuracy"
"""The validation metric the policies read."""

MODE = "max"
"""Whether larger (`"max"`) or smaller (`"min"`) values of `METRIC` are better."""
