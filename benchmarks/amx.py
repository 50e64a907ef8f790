"""Timing LiteRT as it runs on x86 CPUs without AMX, on a CPU that has it.

Intel CPUs since Sapphire Rapids have AMX, tile units for int8 and bfloat16
matrix products. XNNPACK (LiteRT's CPU path) uses them for int8 convolutions
once Linux grants the process the tile state (`arch_prctl(ARCH_REQ_XCOMP_PERM,
XFEATURE_XTILEDATA)`), and its AMX kernels compute 64 output channels at a
time: every int8 layer of up to 64 channels costs the same, so a slimmed
small model runs no faster than the original (measured in
`benchmarks/results/runtime_widths.md`). Most CPUs a small model is deployed
on (phones, microcontroller hosts, laptops, AMD servers) have no AMX.

`withhold_amx()` installs a seccomp filter that answers that one request with
`EPERM`; XNNPACK then falls back to its AVX-512 kernels, exactly as on an
AVX-512 CPU without AMX. The filter lasts for the life of the process (and
its threads and children), so call it first, in a process that only times.
"""

import ctypes
import os
import platform
import struct

_ARCH_PRCTL = 158  # x86_64 syscall number
_ARCH_REQ_XCOMP_PERM = 0x1023
_PR_SET_NO_NEW_PRIVS, _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER = 38, 22, 2
_LOAD_WORD, _JUMP_IF_EQUAL, _RETURN = 0x20, 0x15, 0x06
_ALLOW, _FAIL_WITH_EPERM = 0x7FFF0000, 0x00050001  # SECCOMP_RET_ERRNO | EPERM


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def withhold_amx():
    """Refuses this process the AMX tile state, so that XNNPACK runs without AMX.

    Raises:
        OSError: Off Linux x86_64, or if the kernel refuses the filter.
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        raise OSError(f"withhold_amx needs Linux on x86_64; this is {platform.system()} "
                      f"on {platform.machine()}, which has no AMX to withhold.")
    program = [  # (code, jump if true, jump if false, constant)
        (_LOAD_WORD, 0, 0, 0),                            # the syscall number
        (_JUMP_IF_EQUAL, 0, 3, _ARCH_PRCTL),
        (_LOAD_WORD, 0, 0, 16),                           # its first argument
        (_JUMP_IF_EQUAL, 0, 1, _ARCH_REQ_XCOMP_PERM),
        (_RETURN, 0, 0, _FAIL_WITH_EPERM),
        (_RETURN, 0, 0, _ALLOW),
    ]
    code = ctypes.create_string_buffer(b"".join(struct.pack("HBBI", *step) for step in program))
    fprog = _SockFprog(len(program), ctypes.addressof(code))
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(
        _PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0
    ) != 0:
        number = ctypes.get_errno()
        raise OSError(number, f"the kernel refused the seccomp filter: {os.strerror(number)}")


def amx_request_allowed():
    """Whether this process may use AMX (asks the kernel as XNNPACK does).

    Returns `False` on CPUs without AMX and after `withhold_amx()`.
    """
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    xfeature_xtiledata = 18
    return libc.syscall(_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, xfeature_xtiledata) == 0
