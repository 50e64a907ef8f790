"""Model-level machinery: masked layers, layer rules, channel analysis, masks, counting and surgery."""

# Registers the rules of Keras' own layers before anything reads the registry.
from tf_asap.core import keras_rules  # noqa: F401
