"""The latency benchmarks' own tools (`benchmarks/amx.py`, `benchmarks/bench_widths.py`).

What they measure is machine-dependent and asserted nowhere; these check that
withholding AMX really denies the request XNNPACK makes, and that the width
sweep writes what it says it writes.
"""

import errno
import json
import os
import platform
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, "benchmarks")
sys.path.insert(0, BENCHMARKS)

import bench_widths  # noqa: E402 - benchmarks/ is not a package

linux_x86_64 = pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64",
    reason="AMX and its arch_prctl request exist on Linux x86_64 only",
)

# Asks for the AMX tile state as XNNPACK does and prints the errno (0: granted).
ASK_FOR_AMX = """
import ctypes, sys
sys.path.insert(0, {benchmarks!r})
from amx import withhold_amx
{withhold}
libc = ctypes.CDLL(None, use_errno=True)
result = libc.syscall(158, 0x1023, 18)
print(0 if result == 0 else ctypes.get_errno())
"""


def _ask_for_amx(withhold):
    code = ASK_FOR_AMX.format(benchmarks=BENCHMARKS, withhold="withhold_amx()" if withhold else "")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return int(done.stdout.strip())


@linux_x86_64
def test_withheld_amx_is_refused_with_eperm_and_only_in_that_process():
    assert _ask_for_amx(withhold=True) == errno.EPERM
    # Without the filter the kernel answers on its own: granted on AMX CPUs,
    # EINVAL elsewhere, never the filter's EPERM.
    assert _ask_for_amx(withhold=False) in (0, errno.EINVAL)


def test_stage_shapes_parse_and_bad_ones_name_the_format():
    assert bench_widths.stage_shape("28x16") == (28, 16)
    for text in ("28", "0x16", "axb"):
        with pytest.raises(Exception, match="SIZExCHANNELS|positive"):
            bench_widths.stage_shape(text)


def test_width_sweep_writes_latency_next_to_exact_flops_shares(tmp_path):
    out = tmp_path / "widths"
    subprocess.run(
        [sys.executable, os.path.join(BENCHMARKS, "bench_widths.py"), "--quantization", "none",
         "--shapes", "6x4", "--widths", "2", "8", "--runs", "5", "--warmup", "1", "--out", str(out)],
        check=True, capture_output=True, text=True,
    )
    written = json.loads(out.with_suffix(".json").read_text())
    (result,) = written["results"]
    assert (result["size"], result["channels"], result["quantization"]) == (6, 4, "none")
    rows = {row["width"]: row for row in result["rows"]}
    assert rows[8]["flops_share"] == pytest.approx(1.0) and rows[8]["latency_share"] == pytest.approx(1.0)
    assert rows[2]["flops_share"] == pytest.approx(0.25)
    assert rows[2]["latency_us"] > 0
    report = out.with_suffix(".md").read_text()
    assert "6x6x4 input" in report and written["command"] in report
