"""tf_asap: adaptive activation-based structured pruning for Keras 3.

The public API, in the order data flows through it:

- `make_prunable`, `apply_masks`, `get_masks`, `strip_masks` (masks),
- `channel_groups`, `ChannelGroup` (which channels are pruned together),
- `count_cost` (params and FLOPs, dense and effective),
- `slim` (physically remove pruned channels).
"""

__version__ = "0.1.0"

from tf_asap.counting import Cost, LayerCost, count_cost
from tf_asap.graph import ChannelGroup, ChannelRef, channel_groups
from tf_asap.layers import MaskedLayer
from tf_asap.masks import apply_masks, get_masks, make_prunable, strip_masks
from tf_asap.surgery import slim
from tf_asap.policies import (
    AccuracyGuaranteed,
    Decision,
    FlopsTarget,
    ParamsTarget,
    Policy,
    RoundResult,
    policy_from_state,
)
from tf_asap import policies
