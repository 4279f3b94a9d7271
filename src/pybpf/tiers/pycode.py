"""The pure-Python compiling tier: each eBPF function becomes one Python function.

The program is translated once into Python source: registers become local
variables, basic blocks become branches of a dispatch loop (a block that jumps to
itself becomes an inner ``while`` loop), and memory checks are inlined as range
tests against the stack and input regions, with every other address handed to
the address space, which either finds the region or raises the memory error.
bpf-to-bpf calls are Python calls, so callee-saved registers stay in the caller's
locals.

The meter is charged once per basic block.  When a block's charge would exceed
the budget, the run is handed to the reference interpreter at that block's first
instruction, with the exact machine state, so budget traps (and anything else
that happens in that last stretch) match the interpreter instruction for
instruction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pybpf.errors import CallDepthExceededError
from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import (
    ATOMIC_OPS,
    BINARY_OPS,
    MASK32,
    MASK64,
    WIDTH_MASK,
    byte_swap,
    immediate_operand,
)
from pybpf.isa.table import Form, Op
from pybpf.program import BLOCK_ENDING_OPS, Program
from pybpf.runtime.helpers import invoke_helper
from pybpf.runtime.machine import Frame, Machine, MachineConfig, in_current_frame
from pybpf.tiers.interp import CompiledInterpreter, check_supported

_REGS = ", ".join(f"r{n}" for n in range(11))
_CALLER_REGS = ", ".join(f"r{n}" for n in range(10))
"""r0-r9 as a callee first sees them: the caller's values (r10 moves down a frame)."""
_RESULT = "r0, r1, r2, r3, r4, r5, count"


class _Deoptimize(Exception):
    """The meter is about to run out: the interpreter finishes the run exactly."""

    def __init__(self, pc: int, count: int, regs: list[int]) -> None:
        self.pc = pc
        self.count = count
        self.regs = regs
        self.frames: list[Frame] = []


class _Stop(Exception):
    """The program ends now (a helper asked to stop, a packet load missed)."""

    def __init__(self, r0: int, count: int) -> None:
        self.r0 = r0
        self.count = count


def _raise_deopt(pc: int, count: int, regs: list[int]) -> None:
    raise _Deoptimize(pc, count, regs)


def _raise_stop(r0: int, count: int) -> None:
    raise _Stop(r0, count)


def _call_depth_exceeded(pc: int, limit: int) -> None:
    raise CallDepthExceededError(pc, limit)


# -- expression templates -------------------------------------------------------------
# {a}: dst operand, {b}: source operand (both already cut to the width), {m}: width mask

_ALU_EXPRESSIONS: dict[Op, str] = {
    Op.ADD: "({a} + {b}) & {m}",
    Op.SUB: "({a} - {b}) & {m}",
    Op.MUL: "({a} * {b}) & {m}",
    Op.OR: "{a} | {b}",
    Op.AND: "{a} & {b}",
    Op.XOR: "{a} ^ {b}",
    Op.LSH: "({a} << ({b} & {shift})) & {m}",
    Op.RSH: "{a} >> ({b} & {shift})",
    Op.MOV: "{b}",
}
"""Operations cheap enough to inline; the rest call :data:`BINARY_OPS`."""

_CONDITIONS: dict[Op, str] = {
    Op.JEQ: "{a} == {b}",
    Op.JNE: "{a} != {b}",
    Op.JGT: "{a} > {b}",
    Op.JGE: "{a} >= {b}",
    Op.JLT: "{a} < {b}",
    Op.JLE: "{a} <= {b}",
    Op.JSET: "{a} & {b}",
    # flipping the sign bit maps signed order onto unsigned order
    Op.JSGT: "({a} ^ {sign}) > ({b} ^ {sign})",
    Op.JSGE: "({a} ^ {sign}) >= ({b} ^ {sign})",
    Op.JSLT: "({a} ^ {sign}) < ({b} ^ {sign})",
    Op.JSLE: "({a} ^ {sign}) <= ({b} ^ {sign})",
}

_UNPACK = {size: f"_U{size}" for size in (1, 2, 4, 8)}
_PACK = {size: f"_P{size}" for size in (1, 2, 4, 8)}
_CODECS = {1: "<B", 2: "<H", 4: "<I", 8: "<Q"}

_TERMINATORS = BLOCK_ENDING_OPS


def _operand(insn: Instruction, width: int) -> str:
    """The source operand of an ALU or jump instruction, cut to ``width`` bits."""
    if insn.spec.form in (Form.ALU_IMM, Form.COND_IMM):
        return hex(immediate_operand(insn.imm, width))
    return f"r{insn.src}" if width == 64 else f"(r{insn.src} & {MASK32:#x})"


def _dst(insn: Instruction, width: int) -> str:
    return f"r{insn.dst}" if width == 64 else f"(r{insn.dst} & {MASK32:#x})"


@dataclass
class _Function:
    """Source lines of one generated Python function."""

    entry: int
    lines: list[str]
    uses_memory: bool = False
    uses_packet: bool = False


class _Generator:
    """Translates one program into Python source."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        self.program = program
        self.frame_size = config.stack_size

    # -- code -----------------------------------------------------------------------

    def generate(self) -> str:
        parts = [self._function(entry, end) for entry, end in self.program.functions]
        return "\n\n".join("\n".join(function.lines) for function in parts) + "\n"

    def _function(self, entry: int, end: int) -> _Function:
        function = _Function(entry, [])
        body: list[str] = []
        for start, block in self.program.basic_blocks(entry, end):
            body.extend(self._block(function, start, block))
        prologue = [
            f"def f{entry}(m, {_REGS}, count, depth):",
            "    B = m.config.budget",
            # the lowest stack address this frame may touch; the address space (used
            # by helpers and slow paths) must agree, so it is set on entry and return
            "    stack = m.stack",
            f"    SL = stack.vm_start = r10 - {self.frame_size}",
        ]
        if function.uses_memory:
            prologue += [
                "    mem = m.memory",
                "    sb = stack.buffer",
                "    SB = stack.base",
                "    SE = stack.vm_end",
                "    FO = r10 - SB",
                "    pk = m.packet",
                "    if pk is None:",
                "        ib = b''",
                "        IB = 1",
                "        IE = 0",
                "        IW = 0",
                "    else:",
                "        ib = pk.buffer",
                "        IB = pk.base",
                "        IE = pk.vm_end",
                "        IW = IE if pk.writable else 0",
                # last valid start address of an access of each size, per region
                *(f"    SE{n} = SE - {n}" for n in (1, 2, 4, 8)),
                *(f"    IE{n} = IE - {n}" for n in (1, 2, 4, 8)),
                *(f"    IW{n} = IW - {n}" for n in (1, 2, 4, 8)),
            ]
        if function.uses_packet:
            prologue += [
                "    pkt = m.packet",
                "    pb = b'' if pkt is None else pkt.buffer",
                "    PL = -1 if pkt is None else len(pb)",
            ]
        prologue += [f"    b = {entry}", "    while True:"]
        function.lines = prologue + body
        return function

    def _block(
        self, function: _Function, start: int, block: tuple[tuple[int, Instruction], ...]
    ) -> list[str]:
        last_pc, last = block[-1]
        following = last_pc + last.slots
        self_loop = (
            last.spec.op in _CONDITIONS or last.spec.op is Op.JA
        ) and self.program.target_of(last_pc, last) == start
        indent = "                " if self_loop else "            "
        lines = [f"        if b == {start}:"]
        if self_loop:
            lines.append("            while True:")
        lines += [
            f"{indent}count += {len(block)}",
            f"{indent}if count > B: _deopt({start}, count - {len(block)}, [{_REGS}])",
        ]
        op = last.spec.op
        straight = block[:-1] if op in _TERMINATORS else block
        for pc, insn in straight:
            lines += [indent + line for line in self._straight(function, pc, insn)]
        if op not in _TERMINATORS:
            lines.append(f"{indent}b = {following}")
            return lines
        if self_loop:
            if op is Op.JA:
                lines.append(f"{indent}continue")
            else:
                lines.append(f"{indent}if {self._condition(last)}: continue")
                lines.append(f"{indent}break")
            lines.append(f"            b = {following}")
            return lines
        lines += [indent + line for line in self._terminator(function, last_pc, last)]
        return lines

    def _condition(self, insn: Instruction) -> str:
        width = insn.spec.width
        return _CONDITIONS[insn.spec.op].format(
            a=_dst(insn, width), b=_operand(insn, width), sign=hex(1 << (width - 1))
        )

    def _terminator(self, function: _Function, pc: int, insn: Instruction) -> list[str]:
        op = insn.spec.op
        following = pc + insn.slots
        if op is Op.EXIT:
            return [f"return {_RESULT}"]
        if op is Op.JA:
            return [f"b = {self.program.target_of(pc, insn)}", "continue"]
        if op in _CONDITIONS:
            target = self.program.target_of(pc, insn)
            return [
                f"if {self._condition(insn)}:",
                f"    b = {target}",
                "    continue",
                f"b = {following}",
            ]
        if op in (Op.CALL, Op.CALLX):
            number = str(insn.imm) if op is Op.CALL else f"r{insn.dst}"
            return [
                f"r0 = _invoke(m, {number}, {pc}, r1, r2, r3, r4, r5)",
                "if m.stop_value is not None: _stop(m.stop_value, count)",
                f"b = {following}",
            ]
        if op is Op.CALL_LOCAL:
            target = self.program.target_of(pc, insn)
            return [
                "if depth >= m.config.max_call_depth:",
                f"    _depth_exceeded({pc}, m.config.max_call_depth)",
                "try:",
                f"    {_RESULT} = f{target}(m, {_CALLER_REGS}, r10 - {self.frame_size}, "
                "count, depth + 1)",
                "except _Deoptimize as deopt:",
                f"    deopt.frames.append(_Frame({following}, (r6, r7, r8, r9)))",
                "    raise",
                "stack.vm_start = SL",
                f"b = {following}",
            ]
        # legacy packet loads: big-endian, and a miss ends the program with r0 = 0
        function.uses_packet = True
        size = insn.spec.size
        if op is Op.LD_ABS:
            offset = str(insn.imm)
        else:
            offset = f"((r{insn.src} + {insn.imm} + 0x80000000) & {MASK32:#x}) - 0x80000000"
        return [
            f"o = {offset}",
            f"if o < 0 or o + {size} > PL: _stop(0, count)",
            f"r0 = int.from_bytes(pb[o:o + {size}], 'big')",
            f"b = {following}",
        ]

    def _straight(self, function: _Function, pc: int, insn: Instruction) -> list[str]:
        """Code for an instruction that does not end its block."""
        spec = insn.spec
        op = spec.op
        width = spec.width
        mask = hex(WIDTH_MASK[width])
        d = f"r{insn.dst}"
        if op in (Op.LSH, Op.RSH) and spec.form is Form.ALU_IMM:
            amount = immediate_operand(insn.imm, width) & (width - 1)
            shifted = f"{_dst(insn, width)} << {amount}" if op is Op.LSH else None
            if shifted is None:
                return [f"{d} = {_dst(insn, width)} >> {amount}"]
            return [f"{d} = ({shifted}) & {mask}"]
        if op in _ALU_EXPRESSIONS:
            expression = _ALU_EXPRESSIONS[op].format(
                a=_dst(insn, width), b=_operand(insn, width), m=mask, shift=width - 1
            )
            return [f"{d} = {expression}"]
        if op in BINARY_OPS:
            return [f"{d} = _alu_{op.value}({_dst(insn, width)}, {_operand(insn, width)}, {width})"]
        if op is Op.NEG:
            return [f"{d} = -{_dst(insn, width)} & {mask}"]
        if op is Op.MOVSX:
            bits = spec.size * 8
            sign = hex(1 << (bits - 1))
            low = hex(WIDTH_MASK[bits])
            return [f"{d} = (((r{insn.src} & {low}) ^ {sign}) - {sign}) & {mask}"]
        if op is Op.LE:
            return [f"{d} &= {hex(WIDTH_MASK[spec.size * 8])}"]
        if op in (Op.BE, Op.BSWAP):
            return [f"{d} = _byte_swap({d}, {spec.size})"]
        if op is Op.LDDW:
            return [f"{d} = {insn.imm & MASK64:#x}"]
        function.uses_memory = True
        if op in (Op.LOAD, Op.LOADSX):
            return self._load(pc, insn)
        if op is Op.STORE:
            return self._store(pc, insn)
        if op in ATOMIC_OPS or op is Op.ATOMIC_CMPXCHG:
            return self._atomic(pc, insn)
        raise AssertionError(f"no lowering for {op}")  # the table test keeps this unreachable

    @staticmethod
    def _address(base: int, off: int) -> str:
        return f"r{base}" if off == 0 else f"(r{base} + {off}) & {MASK64:#x}"

    def _load(self, pc: int, insn: Instruction) -> list[str]:
        size = insn.spec.size
        unpack = _UNPACK[size]
        if insn.spec.op is Op.LOADSX:
            sign = hex(1 << (size * 8 - 1))
            wrap = f"((({{}} ^ {sign}) - {sign}) & {MASK64:#x})"
        else:
            wrap = "{}"
        d = f"r{insn.dst}"
        if in_current_frame(insn.src, insn.off, size, self.frame_size):
            # a constant offset inside the current frame cannot miss (r10 is read-only)
            value = f"{unpack}(sb, FO - {-insn.off})[0]"
            return [f"{d} = {wrap.format(value)}"]
        return [
            f"a = {self._address(insn.src, insn.off)}",
            f"if SL <= a <= SE{size}: {d} = {wrap.format(f'{unpack}(sb, a - SB)[0]')}",
            f"elif IB <= a <= IE{size}: {d} = {wrap.format(f'{unpack}(ib, a - IB)[0]')}",
            f"else: {d} = {wrap.format(f'mem.load(a, {size}, {pc})')}",
        ]

    def _store(self, pc: int, insn: Instruction) -> list[str]:
        size = insn.spec.size
        pack = _PACK[size]
        size_mask = hex(WIDTH_MASK[size * 8])
        if insn.spec.form is Form.STORE_IMM:
            value = hex(insn.imm & WIDTH_MASK[size * 8])
        else:
            value = f"r{insn.src}" if size == 8 else f"r{insn.src} & {size_mask}"
        if in_current_frame(insn.dst, insn.off, size, self.frame_size):
            return [f"{pack}(sb, FO - {-insn.off}, {value})"]
        return [
            f"a = {self._address(insn.dst, insn.off)}",
            f"if SL <= a <= SE{size}: {pack}(sb, a - SB, {value})",
            f"elif IB <= a <= IW{size}: {pack}(ib, a - IB, {value})",
            f"else: mem.store(a, {size}, {value}, {pc})",
        ]

    def _atomic(self, pc: int, insn: Instruction) -> list[str]:
        spec = insn.spec
        width = spec.width
        mask = hex(WIDTH_MASK[width])
        address = self._address(insn.dst, insn.off)
        s = f"r{insn.src}"
        if spec.op is Op.ATOMIC_CMPXCHG:
            return [
                f"x = r0 & {mask}",
                f"y = {s}",
                f"r0 = mem.read_modify_write({address}, {spec.size}, "
                f"lambda v: y if v == x else v, {pc})",
            ]
        update = {
            Op.ATOMIC_ADD: f"(v + y) & {mask}",
            Op.ATOMIC_OR: "v | y",
            Op.ATOMIC_AND: "v & y",
            Op.ATOMIC_XOR: "v ^ y",
            Op.ATOMIC_XCHG: "y",
        }[spec.op]
        target = s if spec.fetch else "_"
        return [
            f"y = {s} & {mask}",
            f"{target} = mem.read_modify_write({address}, {spec.size}, lambda v: {update}, {pc})",
        ]


def _namespace() -> dict[str, Any]:
    namespace: dict[str, Any] = {
        "_deopt": _raise_deopt,
        "_stop": _raise_stop,
        "_depth_exceeded": _call_depth_exceeded,
        "_Deoptimize": _Deoptimize,
        "_Frame": Frame,
        "_invoke": invoke_helper,
        "_byte_swap": byte_swap,
    }
    for op, function in BINARY_OPS.items():
        namespace[f"_alu_{op.value}"] = function
    for size, code in _CODECS.items():
        codec = struct.Struct(code)
        namespace[_UNPACK[size]] = codec.unpack_from
        namespace[_PACK[size]] = codec.pack_into
    return namespace


class CompiledPython:
    """A program translated to Python functions, with the interpreter as its fallback."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        check_supported(program)
        self.program = program
        self.source = _Generator(program, config).generate()
        namespace = _namespace()
        code = compile(self.source, f"<pybpf pycode {program.name or 'program'}>", "exec")
        exec(code, namespace)
        self._main: Callable[..., tuple[int, ...]] = namespace["f0"]

    @cached_property
    def _reference(self) -> CompiledInterpreter:
        """The reference tier, built on first need: budget hand-overs and fallbacks."""
        return CompiledInterpreter(self.program)

    def listing(self) -> str:
        """The generated Python source."""
        return self.source

    def run(self, m: Machine) -> int:
        regs = m.regs
        try:
            result = self._main(m, *regs, 0, 1)
        except _Deoptimize as deopt:
            frames = list(reversed(deopt.frames))
            return self._reference.resume(m, deopt.pc, deopt.count, deopt.regs, frames)
        except _Stop as stop:
            regs[0] = stop.r0 & MASK64
            m.instructions = stop.count
            return regs[0]
        regs[0:6] = result[0:6]
        m.instructions = result[6]
        return regs[0]


class PythonCodeTier:
    """Compiles to Python source; available everywhere."""

    name = "pycode"

    def unavailable_reason(self) -> str | None:
        return None

    def compile(self, program: Program, config: MachineConfig) -> CompiledPython:
        return CompiledPython(program, config)
