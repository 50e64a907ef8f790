"""Former home of the channel analysis, kept so existing imports keep working.

The analysis now lives in three modules, one job each:
`tf_asap.core.keras_graph` (flattening and replaying Keras graphs),
`tf_asap.core.rules` (the registry of layer rules) and
`tf_asap.core.channels` (`ChannelGroup`, `ChannelAnalysis`) and
`tf_asap.core.analysis` (`analyze`, `channel_groups`).
Import from those.
"""

from tf_asap.core.analysis import analyze, channel_groups  # noqa: F401
from tf_asap.core.channels import ChannelAnalysis, ChannelGroup, ChannelRef  # noqa: F401
from tf_asap.core.keras_graph import FlatGraph, OpCall, find_layer_names, flatten_graph, replay  # noqa: F401
from tf_asap.core.rules import channel_axes, is_kernel  # noqa: F401
