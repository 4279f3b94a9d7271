"""The pure-Python compiling tier: each eBPF function becomes one Python function.

The program is translated once into Python source.  Registers become local
variables; control flow becomes structured Python: every loop (an interval of
blocks that some backward jump closes) is a ``while True``, a backward jump to its
header is ``continue``, leaving it is ``break``, and straight-line code falls
through.  Jumps that structure alone cannot express set a pending target ``b``
(a block's first pc): a block that such a jump may skip runs only when
``b <= its pc``, so falling through never has to update ``b``; a jump out of
several loops at once breaks out level by level (negative ``b`` encodes a jump
that continues an enclosing loop).  Memory checks are inlined as range tests
against the stack and input regions, with every other address handed to the
address space, which either finds the region or raises the memory error.
bpf-to-bpf calls are Python calls, so callee-saved registers stay in the caller's
locals.

The meter is exact at every point where a run can end.  Each block adds its
length as it starts, and the budget is tested only where the acyclic stretch of
code that follows begins: at function entry, before each backward jump and after
each bpf-to-bpf call.  The test asks whether the longest forward path from that
point to the next test could overrun; if so, the run is handed to the reference
interpreter right there, with the exact machine state, so budget traps (and
anything else that happens in that last stretch) match the interpreter
instruction for instruction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
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
from pybpf.program import BLOCK_ENDING_OPS, Block, Program
from pybpf.runtime.helpers import invoke_helper
from pybpf.runtime.machine import Frame, Machine, MachineConfig, in_current_frame
from pybpf.tiers.interp import CompiledInterpreter, check_supported

_REGS = ", ".join(f"r{n}" for n in range(11))
_CALLER_REGS = ", ".join(f"r{n}" for n in range(10))
"""r0-r9 as a callee first sees them: the caller's values (r10 moves down a frame)."""
_RESULT = "r0, r1, r2, r3, r4, r5, count"
_INDENT = "    "
_MAX_LOOP_NESTING = 12
"""Deeper loop nests are flattened into one loop (CPython allows 20 nested blocks)."""


class _Deoptimize(Exception):
    """The meter may run out soon: the interpreter finishes the run exactly."""

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

_NO_FALL_THROUGH = frozenset({Op.EXIT, Op.JA})
"""Block-ending operations after which control never reaches the next block."""

_MEMORY_OPS = frozenset({Op.LOAD, Op.LOADSX, Op.STORE, Op.ATOMIC_CMPXCHG, *ATOMIC_OPS})


def _operand(insn: Instruction, width: int) -> str:
    """The source operand of an ALU or jump instruction, cut to ``width`` bits."""
    if insn.spec.form in (Form.ALU_IMM, Form.COND_IMM):
        return hex(immediate_operand(insn.imm, width))
    return f"r{insn.src}" if width == 64 else f"(r{insn.src} & {MASK32:#x})"


def _dst(insn: Instruction, width: int) -> str:
    return f"r{insn.dst}" if width == 64 else f"(r{insn.dst} & {MASK32:#x})"


def _indent(lines: list[str], levels: int = 1) -> list[str]:
    prefix = _INDENT * levels
    return [prefix + line for line in lines]


# -- control-flow structure -------------------------------------------------------------


@dataclass(eq=False)
class _Loop:
    """Blocks ``first`` to ``last`` (indexes in the function), closed by backward jumps.

    The flags say what the code right after the loop must pass on to the
    enclosing loop: jumps that leave this loop and continue the parent
    (``continues_parent``), continue a loop further out (``breaks_parent``) or go
    forward past the parent's end (``leaves_parent``).
    """

    first: int
    last: int
    parent: _Loop | None = None
    has_guards: bool = False
    continues_parent: bool = False
    breaks_parent: bool = False
    leaves_parent: bool = False

    def __contains__(self, index: int) -> bool:
        return self.first <= index <= self.last


def _loop_spans(backward: list[tuple[int, int]], count: int) -> list[tuple[int, int]]:
    """Block intervals closed by the backward jumps ``(source, target)``, made laminar.

    Intervals that overlap without nesting, or share a first block, are merged, so
    the result nests like Python loops.  A nest deeper than Python allows becomes
    one loop around the whole function.
    """
    ends: dict[int, int] = {}
    for source, target in backward:
        ends[target] = max(ends.get(target, source), source)
    spans = sorted(ends.items())
    changed = True
    while changed:
        changed = False
        merged: list[tuple[int, int]] = []
        for first, last in sorted(spans):
            for k, (other_first, other_last) in enumerate(merged):
                if other_first == first or other_first < first <= other_last < last:
                    merged[k] = (other_first, max(last, other_last))
                    changed = True
                    break
            else:
                merged.append((first, last))
        spans = merged
    depth = 0
    open_ends: list[int] = []
    for first, last in sorted(spans, key=lambda span: (span[0], -span[1])):
        while open_ends and open_ends[-1] < first:
            open_ends.pop()
        open_ends.append(last)
        depth = max(depth, len(open_ends))
    if depth > _MAX_LOOP_NESTING:
        return [(0, count - 1)]
    return spans


@dataclass
class _Function:
    """One function's blocks, loops and the facts the code generator needs about them."""

    entry: int
    blocks: list[Block]
    starts: list[int]
    end: int
    targets: list[int | None]
    """Index of the block each block's jump goes to, if it ends in a jump."""
    falls: list[bool]
    """Whether control may run off each block's end into the next one."""
    loops: list[_Loop] = field(default_factory=list)
    innermost: list[_Loop | None] = field(default_factory=list)
    loop_at: dict[int, _Loop] = field(default_factory=dict)
    guarded: set[int] = field(default_factory=set)
    reach: list[int] = field(default_factory=list)
    """Longest run of instructions from each block to the next budget test."""
    uses_memory: bool = False
    uses_packet: bool = False
    sets_frame: bool = False
    """Whether the stack bound must follow this function's frame (memory, calls)."""

    def pc_of(self, index: int) -> int:
        return self.starts[index] if index < len(self.starts) else self.end

    def route(self, source: int, target: int) -> tuple[_Loop | None, list[_Loop]]:
        """The innermost loop holding both blocks, and the loops the jump leaves first."""
        broken: list[_Loop] = []
        loop = self.innermost[source]
        while loop is not None and target not in loop:
            broken.append(loop)
            loop = loop.parent
        return loop, broken


def _analyse(program: Program, entry: int, end: int) -> _Function:
    blocks = program.basic_blocks(entry, end)
    starts = [start for start, _ in blocks]
    index = {start: i for i, start in enumerate(starts)}
    targets: list[int | None] = []
    falls: list[bool] = []
    for _start, body in blocks:
        pc, final = body[-1]
        op = final.spec.op
        target = program.target_of(pc, final)
        jumps = target is not None and op is not Op.CALL_LOCAL
        targets.append(index[target] if jumps and target is not None else None)
        falls.append(op not in _NO_FALL_THROUGH)
    function = _Function(entry, blocks, starts, end, targets, falls)
    backward = [(i, t) for i, t in enumerate(targets) if t is not None and t <= i]
    spans = _loop_spans(backward, len(blocks))
    function.innermost = [None] * len(blocks)
    open_loops: list[_Loop] = []
    for first, last in sorted(spans, key=lambda span: (span[0], -span[1])):
        while open_loops and open_loops[-1].last < first:
            open_loops.pop()
        loop = _Loop(first, last, open_loops[-1] if open_loops else None)
        open_loops.append(loop)
        function.loops.append(loop)
        function.loop_at[first] = loop
        for i in range(first, last + 1):
            function.innermost[i] = loop  # inner loops come later and overwrite
    _mark_jumps(function)
    function.reach = _reach(function)
    return function


def _mark_jumps(function: _Function) -> None:
    """Find the blocks a pending target may skip, and what each loop passes on."""
    for source, target in enumerate(function.targets):
        if target is None:
            continue
        common, broken = function.route(source, target)
        if target <= source:
            if common is None:
                raise AssertionError("a backward jump outside every loop")  # spans cover it
            skipped = range(common.first, target)
            for k, loop in enumerate(broken):
                if k + 1 < len(broken):
                    loop.breaks_parent = True
                else:
                    loop.continues_parent = True
        else:
            resume = broken[-1].last + 1 if broken else source + 1
            skipped = range(resume, target)
            for loop in broken[:-1]:
                loop.leaves_parent = True
        function.guarded.update(skipped)
    for loop in function.loops:
        loop.has_guards = any(i in function.guarded for i in range(loop.first, loop.last + 1))


def _reach(function: _Function) -> list[int]:
    """For each block, the most instructions a forward path from it runs before a test."""
    reach = [0] * len(function.blocks)
    for i in range(len(function.blocks) - 1, -1, -1):
        _start, body = function.blocks[i]
        onward = 0
        if body[-1][1].spec.op is not Op.CALL_LOCAL:
            if function.falls[i] and i + 1 < len(reach):
                onward = reach[i + 1]
            target = function.targets[i]
            if target is not None and target > i:
                onward = max(onward, reach[target])
        reach[i] = len(body) + onward
    return reach


# -- code generation ----------------------------------------------------------------------


class _Generator:
    """Translates one program into Python source."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        self.program = program
        self.frame_size = config.stack_size
        self.budget = config.budget
        self.max_depth = config.max_call_depth
        self.functions = {entry: _analyse(program, entry, end) for entry, end in program.functions}
        self._scan_frames()

    def _scan_frames(self) -> None:
        for function in self.functions.values():
            for _start, body in function.blocks:
                for _pc, insn in body:
                    op = insn.spec.op
                    if op in (Op.LD_ABS, Op.LD_IND):
                        function.uses_packet = True
                    elif op in (Op.CALL, Op.CALLX, Op.CALL_LOCAL) or op in _MEMORY_OPS:
                        function.sets_frame = True
                        function.uses_memory |= op in _MEMORY_OPS

    def generate(self) -> str:
        parts = [self._function(function) for function in self.functions.values()]
        return "\n\n".join("\n".join(lines) for lines in parts) + "\n"

    def _budget_test(self, function: _Function, index: int) -> str:
        limit = self.budget - function.reach[index]
        pc = function.pc_of(index)
        return f"if count > {limit}: _deopt({pc}, count, [{_REGS}])"

    def _function(self, function: _Function) -> list[str]:
        lines = [f"def f{function.entry}(m, {_REGS}, count, depth):"]
        prologue: list[str] = [self._budget_test(function, 0)]
        if function.sets_frame:
            # the lowest stack address this frame may touch; the address space (used
            # by helpers and slow paths) must agree, so it is set on entry and return
            prologue += ["stack = m.stack", f"SL = stack.vm_start = r10 - {self.frame_size}"]
        if function.uses_memory:
            prologue += [
                "mem = m.memory",
                "sb = stack.buffer",
                "SB = stack.base",
                "SE = stack.vm_end",
                "FO = r10 - SB",
                "pk = m.packet",
                "if pk is None:",
                "    ib = b''",
                "    IB = 1",
                "    IE = 0",
                "    IW = 0",
                "else:",
                "    ib = pk.buffer",
                "    IB = pk.base",
                "    IE = pk.vm_end",
                "    IW = IE if pk.writable else 0",
                # last valid start address of an access of each size, per region
                *(f"SE{n} = SE - {n}" for n in (1, 2, 4, 8)),
                *(f"IE{n} = IE - {n}" for n in (1, 2, 4, 8)),
                *(f"IW{n} = IW - {n}" for n in (1, 2, 4, 8)),
            ]
        if function.uses_packet:
            prologue += [
                "pkt = m.packet",
                "pb = b'' if pkt is None else pkt.buffer",
                "PL = -1 if pkt is None else len(pb)",
            ]
        if function.guarded or function.loops:
            prologue.append(f"b = {function.entry}")
        body = self._range(function, 0, len(function.blocks) - 1, None)
        return lines + _indent(prologue + body)

    def _range(self, function: _Function, first: int, last: int, loop: _Loop | None) -> list[str]:
        """Code for blocks ``first`` to ``last``, the body of ``loop`` (None: the function)."""
        lines: list[str] = []
        i = first
        while i <= last:
            child = function.loop_at.get(i)
            if child is not None and child is not loop:
                body = self._range(function, child.first, child.last, child)
                # running off the body's end leaves the loop (a pending target skips it)
                ending = [] if body[-1] == "continue" else ["break"]
                lines += ["while True:", *_indent([*body, *ending])]
                lines += self._after_loop(function, child)
                i = child.last + 1
                continue
            code = self._block(function, i)
            if i in function.guarded:
                code = [f"if b <= {function.starts[i]}:", *_indent(code)]
            lines += code
            i += 1
        return lines

    @staticmethod
    def _after_loop(function: _Function, loop: _Loop) -> list[str]:
        """Pass on the jumps that left ``loop`` for places further out."""
        parent = loop.parent
        lines: list[str] = []
        if loop.continues_parent or loop.breaks_parent:
            inner: list[str] = []
            if loop.breaks_parent:
                if loop.continues_parent and parent is not None:
                    inner.append(f"if b > {-1 - function.starts[parent.first]}: break")
                else:
                    inner.append("break")
            if loop.continues_parent:
                inner += ["b = -1 - b", "continue"]
            lines += ["if b < 0:", *_indent(inner)]
        if loop.leaves_parent and parent is not None:
            lines.append(f"if b >= {function.pc_of(parent.last + 1)}: break")
        return lines

    def _jump(self, function: _Function, source: int, target: int) -> list[str]:
        """Code that moves control from the end of block ``source`` to block ``target``."""
        common, broken = function.route(source, target)
        pc = function.starts[target]
        if target <= source:
            test = self._budget_test(function, target)
            if broken:
                return [test, f"b = {-1 - pc}", "break"]
            if common is not None and (target != common.first or common.has_guards):
                return [test, f"b = {pc}", "continue"]
            return [test, "continue"]
        if not broken:
            return [] if target == source + 1 else [f"b = {pc}"]
        if len(broken) == 1 and target == broken[0].last + 1:
            return ["break"]
        return [f"b = {pc}", "break"]

    def _block(self, function: _Function, index: int) -> list[str]:
        _start, body = function.blocks[index]
        last_pc, last = body[-1]
        op = last.spec.op
        lines = [f"count += {len(body)}"]
        straight = body[:-1] if op in BLOCK_ENDING_OPS else body
        for pc, insn in straight:
            lines += self._straight(pc, insn)
        if op not in BLOCK_ENDING_OPS:
            return lines
        target = function.targets[index]
        if op is Op.JA and target is not None:
            return lines + self._jump(function, index, target)
        if op in _CONDITIONS and target is not None:
            jump = self._jump(function, index, target)
            return lines + ([f"if {self._condition(last)}:", *_indent(jump)] if jump else [])
        return lines + self._terminator(function, index, last_pc, last)

    def _condition(self, insn: Instruction) -> str:
        width = insn.spec.width
        return _CONDITIONS[insn.spec.op].format(
            a=_dst(insn, width), b=_operand(insn, width), sign=hex(1 << (width - 1))
        )

    def _terminator(self, function: _Function, index: int, pc: int, insn: Instruction) -> list[str]:
        """Exits, calls and legacy packet loads: block ends that are not jumps."""
        op = insn.spec.op
        if op is Op.EXIT:
            return [f"return {_RESULT}"]
        if op in (Op.CALL, Op.CALLX):
            number = str(insn.imm) if op is Op.CALL else f"r{insn.dst}"
            return [
                f"r0 = _invoke(m, {number}, {pc}, r1, r2, r3, r4, r5)",
                "if m.stop_value is not None: _stop(m.stop_value, count)",
            ]
        if op is Op.CALL_LOCAL:
            return self._local_call(function, index, pc, insn)
        # legacy packet loads: big-endian, and a miss ends the program with r0 = 0
        size = insn.spec.size
        if op is Op.LD_ABS:
            offset = str(insn.imm)
        else:
            offset = f"((r{insn.src} + {insn.imm} + 0x80000000) & {MASK32:#x}) - 0x80000000"
        return [
            f"o = {offset}",
            f"if o < 0 or o + {size} > PL: _stop(0, count)",
            f"r0 = int.from_bytes(pb[o:o + {size}], 'big')",
        ]

    def _local_call(self, function: _Function, index: int, pc: int, insn: Instruction) -> list[str]:
        target = self.program.target_of(pc, insn)
        if target is None:
            raise AssertionError("a local call without a target")  # decoding guarantees one
        callee = self.functions[target]
        following = pc + insn.slots
        lines = [
            f"if depth >= {self.max_depth}: _depth_exceeded({pc}, {self.max_depth})",
            "try:",
            f"    {_RESULT} = f{target}(m, {_CALLER_REGS}, r10 - {self.frame_size}, "
            "count, depth + 1)",
            "except _Deoptimize as deopt:",
            f"    deopt.frames.append(_Frame({following}, (r6, r7, r8, r9)))",
            "    raise",
        ]
        if callee.sets_frame:
            lines.append("stack.vm_start = SL")
        if index + 1 < len(function.blocks):
            lines.append(self._budget_test(function, index + 1))
        return lines

    def _straight(self, pc: int, insn: Instruction) -> list[str]:
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
        self.config = config
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
        if m.config is not self.config and m.config != self.config:
            # the limits are compiled in; a machine with others runs on the reference
            return self._reference.run(m)
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
