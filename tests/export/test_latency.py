"""Tests for tf_asap.export.latency: the side-by-side LiteRT latency report."""

import os

import pytest

import tf_asap
from tf_asap.errors import ConfigurationError
from tf_asap.export.latency import LatencyRow, int8_latency_caveat, latency_report, render_latency_table
from tf_asap.export.tflite import export_tflite
from tests.export.models import residual_model, slimmed_residual_model


def test_latency_report_rows_hold_speedup_and_flops_ratio(tmp_path):
    wide = residual_model(width=32)
    slim = slimmed_residual_model()
    flatbuffer_path = export_tflite(slim, tmp_path / "slim.tflite")

    rows = latency_report(
        {"wide": wide, "slim": slim, "slim_file": flatbuffer_path},
        costs={"slim_file": (123, 4567)},
        num_runs=20,
        warmup_runs=2,
    )

    assert [row.name for row in rows] == ["wide", "slim", "slim_file"]
    wide_row, slim_row, file_row = rows
    assert wide_row.speedup == 1.0 and wide_row.flops_ratio == 1.0
    assert wide_row.flops == tf_asap.count_cost(wide).flops
    assert slim_row.flops_ratio == pytest.approx(
        tf_asap.count_cost(wide).flops / tf_asap.count_cost(slim).flops
    )
    assert slim_row.speedup == pytest.approx(wide_row.latency_ms / slim_row.latency_ms)
    assert slim_row.efficiency == pytest.approx(slim_row.speedup / slim_row.flops_ratio)
    assert (file_row.params, file_row.flops) == (123, 4567)
    assert file_row.size_bytes == os.path.getsize(flatbuffer_path)
    assert all(0 < row.latency_p10_ms <= row.latency_ms <= row.latency_p90_ms for row in rows)


def test_latency_report_can_time_with_thread_cpu_time():
    model = residual_model(width=8)

    rows = latency_report(
        {"a": model, "b": model}, clock="cpu", num_runs=10, warmup_runs=1
    )

    assert all(row.latency_ms > 0 for row in rows)
    with pytest.raises(ConfigurationError, match="num_threads=1"):
        latency_report({"a": model}, clock="cpu", num_threads=2)
    with pytest.raises(ConfigurationError, match="`clock`"):
        latency_report({"a": model}, clock="gpu")


def test_latency_table_renders_one_markdown_row_per_model():
    rows = [
        LatencyRow("original", 2048, 2.0, 1.9, 2.2, 1000, 4_000_000, 1.0, 1.0, 1.0),
        LatencyRow("slimmed", 1024, 1.0, 0.9, 1.1, 500, 2_000_000, 2.0, 2.0, 1.0),
        LatencyRow("no_cost", 1024, 1.0, 0.9, 1.1),
    ]

    table = render_latency_table(rows).splitlines()

    assert len(table) == 5
    assert table[0].startswith("| model | size (KiB) | params | FLOPs |")
    assert table[3] == (
        "| slimmed | 1.0 | 500 | 2.00M | 1.000 (0.900-1.100) | 2.00x | 2.00x | 100% |"
    )
    assert table[4].endswith("| 1.00x | - | - |")


def test_latency_report_rejects_an_unknown_baseline():
    with pytest.raises(ConfigurationError, match="baseline"):
        latency_report({"a": residual_model(width=4)}, baseline="b")


def test_int8_latency_caveat_names_amx_only_on_cpus_that_have_it(tmp_path):
    with_amx, without = tmp_path / "amx", tmp_path / "avx512"
    with_amx.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni amx_tile amx_int8\n")
    without.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_vnni\n")
    assert "AMX" in int8_latency_caveat(str(with_amx))
    assert int8_latency_caveat(str(without)) is None
    assert int8_latency_caveat(str(tmp_path / "missing")) is None
