"""What generated code calls: the hand-over and stop signals, and the names it uses."""

from __future__ import annotations

import struct
from typing import Any

from pybpf.errors import CallDepthExceededError
from pybpf.isa.semantics import BINARY_OPS, byte_swap
from pybpf.runtime.helpers import invoke_helper
from pybpf.runtime.machine import Frame
from pybpf.verifier.counted import TRIPS

UNPACK = {size: f"_U{size}" for size in (1, 2, 4, 8)}
PACK = {size: f"_P{size}" for size in (1, 2, 4, 8)}
_CODECS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}


class Deoptimize(Exception):
    """The meter may run out soon: the interpreter finishes the run exactly."""

    def __init__(self, pc: int, count: int, regs: list[int]) -> None:
        self.pc = pc
        self.count = count
        self.regs = regs
        self.frames: list[Frame] = []


class Stop(Exception):
    """The program ends now (a helper asked to stop, a packet load missed)."""

    def __init__(self, r0: int, count: int) -> None:
        self.r0 = r0
        self.count = count


def _raise_deopt(pc: int, count: int, regs: list[int]) -> None:
    raise Deoptimize(pc, count, regs)


def _raise_stop(r0: int, count: int) -> None:
    raise Stop(r0, count)


def _call_depth_exceeded(pc: int, limit: int) -> None:
    raise CallDepthExceededError(pc, limit)


def namespace() -> dict[str, Any]:
    """The globals generated code runs with."""
    names: dict[str, Any] = {
        "_deopt": _raise_deopt,
        "_stop": _raise_stop,
        "_depth_exceeded": _call_depth_exceeded,
        "_Deoptimize": Deoptimize,
        "_Frame": Frame,
        "_invoke": invoke_helper,
        "_byte_swap": byte_swap,
    }
    for op, function in BINARY_OPS.items():
        names[f"_alu_{op.value}"] = function
    for op, passes in TRIPS.items():
        names[f"_passes_{op.value}"] = passes
    for size, code in _CODECS.items():
        codec = struct.Struct(code)
        names[UNPACK[size]] = codec.unpack_from
        names[PACK[size]] = codec.pack_into
    return names
