"""tf_asap: adaptive activation-based structured pruning for Keras 3.

The public API, in the order data flows through it:

- masks: `make_prunable`, `apply_masks`, `get_masks`, `strip_masks`;
- graph: `channel_groups`, `ChannelGroup` (which channels are pruned together);
  `register_layer`, `LayerRule` (teach tf_asap a custom layer's channels);
- counting: `count_cost` (params and FLOPs, dense and effective);
- statistics and importance: `collect_activation_stats`, `tf_asap.pruning.importance`;
- thresholds: `threshold_masks`, `ratio_masks`, `attention_reference`;
- policies: `AccuracyGuaranteed`, `ParamsTarget`, `FlopsTarget`;
- controller and callbacks: `RoundController`, `train_baseline`,
  `AdaptivePruning`, `ActivationStatsCallback`;
- surgery: `slim`;
- export: `export_saved_model`, `export_tflite`, `export_micro`,
  `latency_report`;
- on top: `load_dataset`, `build_model`.
"""

__version__ = "0.1.0"

from tf_asap import recipe
from tf_asap.pruning import importance, policies
from tf_asap.rounds import controller, report  # `tf_asap.controller`: the path before the layout
from tf_asap.rounds.callback import AdaptivePruning
from tf_asap.pruning.stats_callback import ActivationStatsCallback
from tf_asap.rounds.controller import Baseline, PruningResult, RoundController, train_baseline
from tf_asap.core.counting import Cost, LayerCost, count_cost
from tf_asap.data import load_arrays, load_dataset
from tf_asap.export import (
    LatencyRow,
    MicroBundle,
    convert_tflite,
    evaluate_tflite,
    evaluate_tflite_micro,
    export_micro,
    export_saved_model,
    export_tflite,
    find_arena_size,
    latency_report,
    render_latency_table,
    run_tflite,
    run_tflite_micro,
)
from tf_asap.core.analysis import channel_groups
from tf_asap.core.channels import ChannelGroup, ChannelRef
from tf_asap.core.rules import LayerRule, register_layer
from tf_asap.inputs import as_arrays, as_batches
from tf_asap.pruning.importance import (
    APoZ,
    ActivationAttention,
    L1Norm,
    L2Norm,
    RandomScore,
    get_criterion,
)
from tf_asap.core.layers import MaskedLayer
from tf_asap.core.masks import apply_masks, get_masks, make_prunable, strip_masks
from tf_asap.pruning.policies import (
    AccuracyGuaranteed,
    Decision,
    FlopsTarget,
    ParamsTarget,
    Policy,
    RoundResult,
    policy_from_state,
)
from tf_asap.pruning.stats import ActivationStatistics, collect_activation_stats
from tf_asap.core.surgery import slim
from tf_asap.pruning.thresholds import attention_reference, ratio_masks, threshold_masks
from tf_asap.zoo import available_models, build_model

__all__ = [
    "AccuracyGuaranteed",
    "ActivationAttention",
    "ActivationStatistics",
    "ActivationStatsCallback",
    "AdaptivePruning",
    "APoZ",
    "apply_masks",
    "as_arrays",
    "as_batches",
    "attention_reference",
    "available_models",
    "Baseline",
    "build_model",
    "channel_groups",
    "ChannelGroup",
    "ChannelRef",
    "collect_activation_stats",
    "convert_tflite",
    "Cost",
    "count_cost",
    "Decision",
    "evaluate_tflite",
    "evaluate_tflite_micro",
    "export_micro",
    "export_saved_model",
    "export_tflite",
    "find_arena_size",
    "FlopsTarget",
    "get_criterion",
    "get_masks",
    "importance",
    "L1Norm",
    "L2Norm",
    "latency_report",
    "LayerRule",
    "LatencyRow",
    "LayerCost",
    "load_arrays",
    "load_dataset",
    "make_prunable",
    "MaskedLayer",
    "MicroBundle",
    "ParamsTarget",
    "policies",
    "Policy",
    "policy_from_state",
    "PruningResult",
    "RandomScore",
    "ratio_masks",
    "recipe",
    "register_layer",
    "render_latency_table",
    "report",
    "RoundController",
    "RoundResult",
    "run_tflite",
    "run_tflite_micro",
    "slim",
    "strip_masks",
    "threshold_masks",
    "train_baseline",
]
