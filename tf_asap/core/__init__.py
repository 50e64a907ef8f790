"""Model-level machinery: masked layers, channel analysis, masks, counting and surgery."""
