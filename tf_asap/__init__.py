"""tf_asap: adaptive activation-based structured pruning for Keras 3."""

__version__ = "0.1.0"
