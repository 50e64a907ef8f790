"""Tests for tf_asap.export.flatbuffer: reading operators and tensors of a .tflite."""

from tf_asap.export.flatbuffer import tflite_operators
from tf_asap.export.tflite import convert_tflite
from tests.export.models import slimmed_residual_model


def test_tflite_operators_lists_each_builtin_once_in_graph_order():
    flatbuffer = convert_tflite(slimmed_residual_model())

    operators = tflite_operators(flatbuffer)

    assert operators[0] == "CONV_2D"
    assert {"ADD", "MAX_POOL_2D", "FULLY_CONNECTED", "SOFTMAX"} <= set(operators)
    assert len(operators) == len(set(operators))
