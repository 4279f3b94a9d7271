"""Python source for a program: one function per eBPF function, registers as locals.

Blocks are laid out as :mod:`~pybpf.tiers.pycode.structure` decides (loops as
``while True``, or ``while not (COND)`` when the body begins with a way out;
guards where a pending target may skip code; a counted loop twice, behind a test
of the budget against its most passes).  Each instruction
becomes a line or two of arithmetic on the register locals; a reduction to the
operation's width is written only where the value ranges say the raw result may
leave it, and then as the cheapest exact form (one conditional subtraction after
an addition, a mask after a multiplication).  Loads and stores test the stack
and input regions inline against bounds bound once per call, none when the
ranges place the access inside the current frame; any other address goes to the
address space, which finds its region or raises the memory error.  Stack words
go through word views, with no alignment test where the low bits tell.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from dataclasses import dataclass

from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import ATOMIC_OPS, MASK32, MASK64, WIDTH_MASK, immediate_operand
from pybpf.isa.table import Form, Op
from pybpf.program import BLOCK_ENDING_OPS, Program
from pybpf.runtime.machine import MachineConfig, in_current_frame
from pybpf.tiers.pycode.structure import Function, Loop, analyse
from pybpf.tiers.pycode.support import PACK, UNPACK
from pybpf.verifier import frames, ranges
from pybpf.verifier.counted import Counted, walks

_REGS = ", ".join(f"r{n}" for n in range(11))
_CALLER_REGS = ", ".join(f"r{n}" for n in range(10))
"""r0-r9 as a callee first sees them: the caller's values (r10 moves down a frame)."""
_RESULT = "r0, r1, r2, r3, r4, r5, count"
_INDENT = "    "

_MEMORY_OPS = frozenset({Op.LOAD, Op.LOADSX, Op.STORE, Op.ATOMIC_CMPXCHG, *ATOMIC_OPS})

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


_SIZES = (1, 2, 4, 8)
_NAME = re.compile(r"[A-Za-z_]\w*")
"""An identifier in generated code (what a prologue binds only if the body uses it)."""
_WORDS = (2, 4, 8)
_LOG2 = {2: 1, 4: 2, 8: 3}
_VIEW_CODES = {2: "H", 4: "I", 8: "Q"}
_VIEWS = sys.byteorder == "little"
"""Native word views read guest memory in its byte order only on little-endian hosts."""


def _indent(lines: list[str]) -> list[str]:
    return [_INDENT + line for line in lines]


def _read(buffer: str, view: str, size: int, views: bool, aligned: bool | None = None) -> str:
    """A read of ``size`` bytes at offset ``o`` of a buffer, through its word view
    when the offset is aligned (tested unless ``aligned`` says)."""
    if size == 1:
        return f"{buffer}[o]"
    unpack = f"{UNPACK[size]}({buffer}, o)[0]"
    if not views or aligned is False:
        return unpack
    word = f"{view}{size}[o >> {_LOG2[size]}]"
    return word if aligned else f"({unpack} if o & {size - 1} else {word})"


def _write(
    buffer: str, view: str, size: int, value: str, views: bool, aligned: bool | None = None
) -> list[str]:
    """A write of ``size`` bytes at offset ``o`` of a buffer (see :func:`_read`)."""
    if size == 1:
        return [f"{buffer}[o] = {value}"]
    pack = f"{PACK[size]}({buffer}, o, {value})"
    if not views or aligned is False:
        return [pack]
    word = f"{view}{size}[o >> {_LOG2[size]}] = {value}"
    return [word] if aligned else [f"if o & {size - 1}: {pack}", f"else: {word}"]


def _frame_item(base: int, off: int, size: int, aligned: bool | None) -> str | None:
    """The stack buffer's byte, or word view's item, that an access proven inside the
    current frame reaches, as one subscript; None where that takes an alignment test
    or an unpacking (a word the low bits do not show to be aligned)."""
    offset = f"r{base} - {_frame_base(off)}"
    if size == 1:
        return f"sb[{offset}]"
    if not _VIEWS or not aligned:
        return None
    return f"s{size}[{offset} >> {_LOG2[size]}]"


def _frame_base(off: int) -> str:
    """The name of ``SB - off`` (the stack buffer's base less a constant offset),
    which the function's prologue binds: one subtraction per access instead of two."""
    if not off:
        return "SB"
    return f"SBn{-off}" if off < 0 else f"SBp{off}"


_FRAME_BASE = re.compile(r"SB([np])(\d+)")


@dataclass(frozen=True)
class _Alu:
    """One ALU instruction's pieces: destination, operands as code, and what ranges say."""

    d: str
    a: str
    b: str
    width: int
    b_range: ranges.Range
    wraps: bool

    @property
    def mask(self) -> str:
        return hex(WIDTH_MASK[self.width])

    @property
    def modulus(self) -> str:
        return hex(WIDTH_MASK[self.width] + 1)

    def shift(self) -> str:
        """The shift amount: a constant when known, else the operand cut to the width."""
        low, high = self.b_range
        if low == high:
            return str(low & (self.width - 1))
        return f"({self.b} & {self.width - 1})"

    def reduced(self, expression: str) -> list[str]:
        return [
            f"{self.d} = ({expression}) & {self.mask}" if self.wraps else f"{self.d} = {expression}"
        ]


def _add(x: _Alu) -> list[str]:
    wrap = [f"if {x.d} > {x.mask}: {x.d} -= {x.modulus}"] if x.wraps else []
    return [f"{x.d} = {x.a} + {x.b}", *wrap]


def _sub(x: _Alu) -> list[str]:
    wrap = [f"if {x.d} < 0: {x.d} += {x.modulus}"] if x.wraps else []
    return [f"{x.d} = {x.a} - {x.b}", *wrap]


def _div(x: _Alu) -> list[str]:
    # division by zero gives 0, modulo by zero leaves the dividend (RFC 9669 4.1)
    if x.b_range == (0, 0):
        return [f"{x.d} = 0"]
    if x.b_range[0] > 0:
        return [f"{x.d} = {x.a} // {x.b}"]
    return [f"{x.d} = {x.a} // {x.b} if {x.b} else 0"]


def _mod(x: _Alu) -> list[str]:
    if x.b_range == (0, 0):
        return [f"{x.d} = {x.a}"]
    if x.b_range[0] > 0:
        return [f"{x.d} = {x.a} % {x.b}"]
    return [f"{x.d} = {x.a} % {x.b} if {x.b} else {x.a}"]


def _call(x: _Alu, op: Op) -> list[str]:
    return [f"{x.d} = _alu_{op.value}({x.a}, {x.b}, {x.width})"]


_ALU: dict[Op, Callable[[_Alu], list[str]]] = {
    Op.ADD: _add,
    Op.SUB: _sub,
    Op.MUL: lambda x: x.reduced(f"{x.a} * {x.b}"),
    Op.LSH: lambda x: x.reduced(f"{x.a} << {x.shift()}"),
    Op.RSH: lambda x: [f"{x.d} = {x.a} >> {x.shift()}"],
    Op.OR: lambda x: [f"{x.d} = {x.a} | {x.b}"],
    Op.AND: lambda x: [f"{x.d} = {x.a} & {x.b}"],
    Op.XOR: lambda x: [f"{x.d} = {x.a} ^ {x.b}"],
    Op.MOV: lambda x: [f"{x.d} = {x.b}"],
    Op.DIV: _div,
    Op.MOD: _mod,
    Op.SDIV: lambda x: _call(x, Op.SDIV),
    Op.SMOD: lambda x: _call(x, Op.SMOD),
    Op.ARSH: lambda x: _call(x, Op.ARSH),
}
"""How each ALU operation is written, given its operands and whether it may wrap."""


def _cut_register(register: int, width: int, state: ranges.State) -> str:
    """Register ``register`` cut to ``width`` bits, as code: no mask if already in range."""
    if state[register][1] <= WIDTH_MASK[width]:
        return f"r{register}"
    return f"(r{register} & {WIDTH_MASK[width]:#x})"


def _source(insn: Instruction, state: ranges.State) -> str:
    """The source operand of an ALU or jump instruction, cut to its width, as code."""
    width = insn.spec.width
    if insn.spec.form in (Form.ALU_IMM, Form.COND_IMM):
        return hex(immediate_operand(insn.imm, width))
    return _cut_register(insn.src, width, state)


def _is_zero_extension(first: Instruction, second: Instruction) -> bool:
    """``lsh r, k`` then ``rsh r, k``: the compilers' idiom for keeping the low bits."""
    return (
        first.spec.op is Op.LSH
        and second.spec.op is Op.RSH
        and first.spec.form is Form.ALU_IMM
        and second.spec.form is Form.ALU_IMM
        and first.dst == second.dst
        and first.spec.width == second.spec.width
        and (first.imm - second.imm) % first.spec.width == 0
    )


class Generator:
    """Translates one program into Python source."""

    def __init__(self, program: Program, config: MachineConfig) -> None:
        self.program = program
        self.frame_size = config.stack_size
        self.budget = config.budget
        self.max_depth = config.max_call_depth
        # the stack region as Machine.create lays it out (CompiledPython.run checks);
        # the main function's r10 is its top, frame k's is k - 1 frames below
        self.stack_top = frames.stack_top(config)
        main_r10, callee_r10 = frames.frame_tops(program, config)
        self.inlined: dict[int, int] = {}
        for entry, end in program.functions:
            length = frames.inline_length(program, entry, end)
            if length is not None:
                self.inlined[entry] = length
        self.functions = {
            entry: analyse(
                program,
                entry,
                end,
                ranges.entry_state(main_r10 if entry == 0 else callee_r10),
                self.inlined,
            )
            for entry, end in program.functions
        }
        for function in self.functions.values():
            self._scan(function)
        self._current = self.functions[0]
        self._unmetered: Loop | None = None
        """The counted loop being written without its budget tests, if any."""
        self._uncounted: int | None = None
        """The block of a one-block counted loop being written without its count
        (added once after the loop, from the number of passes)."""
        self._hoisted: dict[int, bool] = {}
        """Accesses (by pc) of the counted loop being written without budget tests
        whose every pass the test before the loop has placed inside the input, and
        whether they are aligned (:func:`_input_walks`)."""
        self._passes: tuple[Loop, str] | None = None
        """A counted loop of several blocks being written without its count per pass,
        and the passes done so far as code: each way out adds them (:meth:`_loop`)."""

    @staticmethod
    def _scan(function: Function) -> None:
        for _start, body in function.blocks:
            for _pc, insn in body:
                op = insn.spec.op
                if op in (Op.LD_ABS, Op.LD_IND):
                    function.uses_packet = True
                elif op in (Op.CALL, Op.CALLX, Op.CALL_LOCAL) or op in _MEMORY_OPS:
                    function.sets_frame = True
                    function.calls_out |= op not in _MEMORY_OPS
                    function.uses_memory |= op in _MEMORY_OPS

    def generate(self) -> str:
        parts = [self._function(function) for function in self.functions.values()]
        return "\n\n".join("\n".join(lines) for lines in parts) + "\n"

    # -- functions, loops and blocks -----------------------------------------------------

    def _budget_test(self, function: Function, index: int) -> str:
        limit = self.budget - function.reach[index]
        pc = function.pc_of(index)
        return f"if count > {limit}: _deopt({pc}, count, [{_REGS}])"

    def _function(self, function: Function) -> list[str]:
        self._current = function
        lines = [f"def f{function.entry}(m, {_REGS}, count, depth):"]
        prologue: list[str] = [self._budget_test(function, 0)]
        body = self._range(function, 0, len(function.blocks) - 1, None)
        if function.sets_frame:
            # the lowest stack address this frame may touch; the address space (used
            # by helpers and slow paths) must agree, so it is set on entry and return
            prologue += ["stack = m.stack", f"SL = stack.vm_start = r10 - {self.frame_size}"]
        if function.uses_memory:
            prologue += self._memory_prologue(function, _NAME.findall("\n".join(body)))
        if function.uses_packet:
            prologue += [
                "pkt = m.packet",
                "pb = b'' if pkt is None else pkt.buffer",
                "PL = -1 if pkt is None else len(pb)",
            ]
        if function.guarded or function.loops:
            prologue.append(f"b = {function.entry}")
        if function.uses_memory and self._packet_views(function):
            # an error must not leave the input pinned by views its traceback holds
            release = " = ".join(["iv", *(f"i{size}" for size in _WORDS), "None"])
            body = ["try:", *_indent(body), "except BaseException:", f"    {release}", "    raise"]
        return lines + _indent(prologue + body)

    def _memory_prologue(self, function: Function, names: list[str]) -> list[str]:
        """Bounds and views of the stack and input buffers, bound once per call: those
        of ``names`` (the names the function's body uses), as a call's cost is mostly
        this for a short program.

        Offsets are tested rather than addresses: ``o = a - base`` must lie in
        ``[low, last start of an access of that size]``.  Without input the input
        base is far above every address, so its test fails at once.
        """
        used = set(names)
        stack_sizes = [size for size in _SIZES if f"SO{size}" in used]
        reads = [size for size in _SIZES if f"IL{size}" in used]
        writes = [size for size in _SIZES if f"IW{size}" in used]
        lines = ["mem = m.memory"] if "mem" in used else []
        lines += ["sb = stack.buffer", "SB = stack.base", "FO = r10 - SB"]
        lines += ["SO = SL - SB"] if "SO" in used else []
        for name in sorted(used):
            if match := _FRAME_BASE.fullmatch(name):
                sign = "+" if match[1] == "n" else "-"
                lines.append(f"{name} = SB {sign} {match[2]}")
        lines += ["n = len(sb)"] if stack_sizes else []
        lines += [f"SO{size} = n - {size}" for size in stack_sizes]
        if used & {"ib", "IB"}:
            limits = [f"IL{size}" for size in reads] + [f"IW{size}" for size in writes]
            lines += [
                "pk = m.packet",
                "if pk is None:",
                "    ib = b''",
                f"    IB = {1 << 66:#x}",
                *([f"    {' = '.join(limits)} = -1"] if limits else []),
                "else:",
                "    ib = pk.buffer",
                "    IB = pk.base",
                *(["    n = len(ib)"] if limits else []),
                *(f"    IL{size} = n - {size}" for size in reads),
                *(f"    IW{size} = n - {size} if pk.writable else -1" for size in writes),
            ]
        if _VIEWS:
            # word views for aligned accesses; the stack is a multiple of 8 bytes long
            # and every frame top is 8-aligned (checked before each run)
            stack_views = [size for size in _WORDS if f"s{size}" in used]
            lines += ["sv = memoryview(sb)"] if stack_views else []
            lines += [f"s{size} = sv.cast('{_VIEW_CODES[size]}')" for size in stack_views]
            lines += [f"F{size} = FO >> {_LOG2[size]}" for size in _WORDS if f"F{size}" in used]
            input_views = [size for size in _WORDS if f"i{size}" in used]
            if self._packet_views(function) and input_views:
                lines.append("iv = memoryview(ib)")
                lines += [
                    f"i{size} = iv[:len(iv) & {-size}].cast('{_VIEW_CODES[size]}')"
                    for size in input_views
                ]
        return lines

    @staticmethod
    def _packet_views(function: Function) -> bool:
        """Whether the function reads the input through word views.

        A view pins the input buffer's size while it lives, so only functions that
        call nothing (no helper can run meanwhile) use them, and they let go of
        them if the run ends in an error.
        """
        return _VIEWS and not function.calls_out

    def _range(self, function: Function, first: int, last: int, loop: Loop | None) -> list[str]:
        """Code for blocks ``first`` to ``last``, the body of ``loop`` (None: the function)."""
        lines: list[str] = []
        pending = 0
        i = first
        while i <= last:
            child = function.loop_at.get(i)
            if child is not None and child is not loop:
                lines += self._loop(function, child)
                lines += self._after_loop(function, child)
                i = child.last + 1
                continue
            skip = function.skips.get(i)
            merges = skip is None and function.merges_into_next(i, last)
            code, pending = self._block(function, i, pending, merges)
            if skip is not None:
                region = self._range(function, i + 1, skip - 1, loop) or ["pass"]
                code += [f"if not ({self._final_condition(function, i)}):", *_indent(region)]
            if i in function.guarded:
                code = [f"if b <= {function.starts[i]}:", *_indent(code or ["pass"])]
            lines += code
            i = i + 1 if skip is None else skip
        return lines

    def _while(self, function: Function, loop: Loop) -> list[str]:
        body = self._range(function, loop.first, loop.last, loop) or ["pass"]
        # running off the body's end leaves the loop (a pending target skips it)
        ending = [] if body[-1] == "continue" else ["break"]
        lines = [*body, *ending]
        first_exit = _leading_exit(lines)
        if first_exit is None:
            return ["while True:", *_indent(lines)]
        condition, leaving, rest = first_exit
        loop_lines = [f"while not ({condition}):", *_indent(rest)]
        return loop_lines + (["else:", *_indent(leaving)] if leaving else [])

    def _loop(self, function: Function, loop: Loop) -> list[str]:
        """A loop; one a counter bounds comes twice, and a test of the budget against
        its most passes picks the copy without the budget tests when it can."""
        metered = self._while(function, loop)
        counted = function.counted.get(loop.first)
        if counted is None:
            return metered
        # a loop of one block can leave only through its counter test (or by a fault,
        # which reports no count): it runs exactly one block more than its passes
        single = loop.first == loop.last
        done = None if single else _passes_done(function, loop, counted)
        walks = _input_walks(function, loop, self._packet_views(function)) if single else []
        self._unmetered = loop
        self._uncounted = loop.first if single else None
        self._passes = None if done is None else (loop, done)
        self._hoisted = {walk.pc: walk.aligned for walk in walks}
        try:
            unmetered = self._while(function, loop)
        finally:
            self._unmetered = self._uncounted = self._passes = None
            self._hoisted = {}
        if done is not None:
            unmetered.insert(0, f"k0 = r{counted.counter}")
        counter = f"r{counted.counter}"
        first = f"({counter} + {counted.step}) & {MASK64:#x}" if counted.updated_first else counter
        bound = hex(counted.constant) if counted.bound is None else f"r{counted.bound}"
        passes = f"_passes_{counted.condition.value}({first}, {bound}, {counted.step})"
        limit = self.budget - function.reach[loop.first]
        if single:
            bounds = "".join(f" and {walk.test}" for walk in walks)
            guard = f"if count <= {limit} - {counted.length} * (trips := {passes}){bounds}:"
            unmetered.append(f"count += {counted.length} * (trips + 1)")
        else:
            guard = f"if count <= {limit} - {counted.length} * {passes}:"
        return [guard, *_indent(unmetered), "else:", *_indent(metered)]

    def _final_condition(self, function: Function, index: int) -> str:
        """The condition of the jump ending block ``index``, on the ranges it sees."""
        _start, body = function.blocks[index]
        state = list(function.entry_ranges[index] or ranges.unknown_state())
        for _pc, insn in body[:-1]:
            ranges.step(insn, state)
        return self._condition(body[-1][1], state)

    @staticmethod
    def _after_loop(function: Function, loop: Loop) -> list[str]:
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

    def _jump(self, function: Function, source: int, target: int) -> list[str]:
        """Code that moves control from the end of block ``source`` to block ``target``."""
        common, broken = function.route(source, target)
        pc = function.starts[target]
        if target <= source:
            unmetered = self._unmetered is not None and target == self._unmetered.first
            test = [] if unmetered else [self._budget_test(function, target)]
            if broken:
                return [*test, f"b = {-1 - pc}", "break"]
            if common is not None and (target != common.first or common.has_guards):
                return [*test, f"b = {pc}", "continue"]
            return [*test, "continue"]
        if not broken:
            return [] if target == source + 1 else [f"b = {pc}"]
        if len(broken) == 1 and target == broken[0].last + 1:
            return ["break"]
        return [f"b = {pc}", "break"]

    def _block(
        self, function: Function, index: int, pending: int, merges: bool
    ) -> tuple[list[str], int]:
        """Code for block ``index`` and the instructions it leaves uncounted.

        ``pending`` instructions of the blocks before are not yet on the meter; the
        count is brought up to date before anything that reads it, and otherwise
        handed on to the next block when only this one leads there (``merges``).
        """
        _start, body = function.blocks[index]
        state = list(function.entry_ranges[index] or ranges.unknown_state())
        last_pc, last = body[-1]
        op = last.spec.op
        total = pending + len(body)
        straight = body[:-1] if op in BLOCK_ENDING_OPS else body
        lines: list[str] = []
        k = 0
        while k < len(straight):
            pc, insn = straight[k]
            if k + 1 < len(straight) and _is_zero_extension(insn, straight[k + 1][1]):
                lines += self._zero_extension(insn, state)
                ranges.step(straight[k + 1][1], state)
                k += 2
                continue
            lines += self._straight(pc, insn, state)
            ranges.step(insn, state)
            k += 1
        callee = self.program.target_of(last_pc, last) if op is Op.CALL_LOCAL else None
        if callee is not None and callee in self.inlined:
            lines += self._inline(last_pc, callee, state)
            total += self.inlined[callee]
            return (lines, total) if merges else ([*lines, f"count += {total}"], 0)
        count = f"count += {total}"
        passes = self._passes[1] if self._passes and index in self._passes[0] else None
        if op not in BLOCK_ENDING_OPS:
            return (lines, total) if merges else ([*lines, count], 0)
        target = function.targets[index]
        if op in _CONDITIONS and target is not None:
            jump = [] if index in function.skips else self._jump(function, index, target)
            condition = self._condition(last, state)
            if merges:
                if passes is not None:  # a way out of the loop
                    count = f"count += {total} + {passes}"
                taken = [f"if {condition}:", *_indent([count, *jump])] if jump else []
                return lines + taken, total
            counting = [] if index == self._uncounted else [count]
            return [*lines, *counting, *([f"if {condition}:", *_indent(jump)] if jump else [])], 0
        if op is Op.JA and target is not None:
            counting = (
                [] if passes is not None else [count]
            )  # the back edge: counted on the way out
            return [*lines, *counting, *self._jump(function, index, target)], 0
        return [*lines, count, *self._terminator(function, index, last_pc, last)], 0

    def _condition(self, insn: Instruction, state: ranges.State) -> str:
        width = insn.spec.width
        return _CONDITIONS[insn.spec.op].format(
            a=_cut_register(insn.dst, width, state),
            b=_source(insn, state),
            sign=hex(1 << (width - 1)),
        )

    def _terminator(self, function: Function, index: int, pc: int, insn: Instruction) -> list[str]:
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

    def _inline(self, pc: int, callee: int, state: ranges.State) -> list[str]:
        """A call of a function written out in place (:func:`.frames.inline_length`).

        The callee starts from the caller's registers and leaves r0-r5 to it; r6-r9
        are put back as a return would.  It sees the caller's value ranges, which
        are its own entry ranges here.
        """
        _start, body = self.functions[callee].blocks[0]
        saved = sorted({6, 7, 8, 9} & {r for _pc, i in body for r in ranges.written(i)})
        lines = [f"if depth >= {self.max_depth}: _depth_exceeded({pc}, {self.max_depth})"]
        lines += [f"t{register} = r{register}" for register in saved]
        inner = list(state)
        for insn_pc, insn in body[:-1]:
            lines += self._straight(insn_pc, insn, inner)
            ranges.step(insn, inner)
        lines += [f"r{register} = t{register}" for register in saved]
        return lines

    def _local_call(self, function: Function, index: int, pc: int, insn: Instruction) -> list[str]:
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

    # -- straight-line instructions ----------------------------------------------------

    def _straight(self, pc: int, insn: Instruction, state: ranges.State) -> list[str]:
        """Code for an instruction that does not end its block, given the ranges before it."""
        spec = insn.spec
        op = spec.op
        width = spec.width
        mask = hex(WIDTH_MASK[width])
        d = f"r{insn.dst}"
        if op in _ALU:
            _result, wraps = ranges.binary(insn, state)
            _a, b_range = ranges.operands(insn, state)
            a = _cut_register(insn.dst, width, state)
            return _ALU[op](_Alu(d, a, _source(insn, state), width, b_range, wraps))
        if op is Op.NEG:
            return [f"{d} = -{_cut_register(insn.dst, width, state)} & {mask}"]
        if op is Op.MOVSX:
            bits = spec.size * 8
            sign = hex(1 << (bits - 1))
            low = hex(WIDTH_MASK[bits])
            return [f"{d} = (((r{insn.src} & {low}) ^ {sign}) - {sign}) & {mask}"]
        if op is Op.LE:
            if state[insn.dst][1] <= WIDTH_MASK[spec.size * 8]:
                return []  # already no wider than the conversion
            return [f"{d} &= {hex(WIDTH_MASK[spec.size * 8])}"]
        if op in (Op.BE, Op.BSWAP):
            return [f"{d} = _byte_swap({d}, {spec.size})"]
        if op is Op.LDDW:
            return [f"{d} = {insn.imm & MASK64:#x}"]
        if op in (Op.LOAD, Op.LOADSX):
            return self._load(pc, insn, state)
        if op is Op.STORE:
            return self._store(pc, insn, state)
        if op in ATOMIC_OPS or op is Op.ATOMIC_CMPXCHG:
            return self._atomic(pc, insn)
        raise AssertionError(f"no lowering for {op}")  # the table test keeps this unreachable

    @staticmethod
    def _zero_extension(insn: Instruction, state: ranges.State) -> list[str]:
        width = insn.spec.width
        amount = immediate_operand(insn.imm, width) & (width - 1)
        kept = WIDTH_MASK[width] >> amount
        return [f"r{insn.dst} = {_cut_register(insn.dst, width, state)} & {kept:#x}"]

    @staticmethod
    def _address(base: int, off: int) -> tuple[list[str], str]:
        """A load or store address as code (it may leave the 64-bit range, which no
        region holds), and the assignment that computes it, if one is needed."""
        if off == 0:
            return [], f"r{base}"
        return [f"a = r{base} + {off}"], "a"

    def _placement(self, base: int, off: int, size: int, state: ranges.State) -> str:
        """Where an access can land, by the base register's range: ``frame`` (inside
        the current frame, no test needed), ``stack`` or ``input`` (only that region
        needs testing) or ``any``.  Regions never overlap, so an address that cannot
        be in the stack region need not be tested against it, and the other way round.
        """
        if frames.in_frame(state, base, off, size, self.frame_size):
            return "frame"
        low, high = state[base][0] + off, state[base][1] + off
        top = self.stack_top
        bottom = top - self.frame_size * self.max_depth
        if low >= bottom and high + size <= top:
            return "stack"
        if 0 <= low and high <= MASK64 and (high + size <= bottom or low >= top):
            return "input"
        # which region to test first is a guess: the stack for registers that were
        # derived from r10, else the input (a stack address fails its first comparison)
        return "stack first" if state[ranges.STACKISH + base] == ranges.STACK else "any"

    @staticmethod
    def _stack_aligned(base: int, off: int, size: int, state: ranges.State) -> bool | None:
        """Whether an access's offset in the stack buffer is a multiple of its size,
        as far as the base register's low bits tell (the stack base is 8-aligned,
        checked before each run); None when they do not tell."""
        k, c = ranges.low_bits(state, base)
        if size == 1 or size > 1 << k:
            return None
        return (c + off) % size == 0

    def _load(self, pc: int, insn: Instruction, state: ranges.State) -> list[str]:
        size = insn.spec.size
        if insn.spec.op is Op.LOADSX:
            sign = hex(1 << (size * 8 - 1))
            wrap = f"((({{}} ^ {sign}) - {sign}) & {MASK64:#x})"
        else:
            wrap = "{}"
        d = f"r{insn.dst}"
        if in_current_frame(insn.src, insn.off, size, self.frame_size):
            # a constant offset inside the current frame cannot miss (r10 is read-only)
            return [f"{d} = {wrap.format(self._frame_read(size, -insn.off))}"]
        setup, a = self._address(insn.src, insn.off)
        views = self._packet_views(self._current)
        if pc in self._hoisted:  # inside the input on every pass (:func:`_input_walks`)
            read = _read("ib", "i", size, views, self._hoisted[pc])
            return [_input_offset(insn.src, insn.off), f"{d} = {wrap.format(read)}"]
        aligned = self._stack_aligned(insn.src, insn.off, size, state)
        stack = f"{d} = {wrap.format(_read('sb', 's', size, _VIEWS, aligned))}"
        slow = f"else: {d} = {wrap.format(f'mem.load({a} & {MASK64:#x}, {size}, {pc})')}"
        placement = self._placement(insn.src, insn.off, size, state)
        if placement == "frame":
            word = _frame_item(insn.src, insn.off, size, aligned)
            if word is not None:
                return [f"{d} = {wrap.format(word)}"]
            return [*setup, f"o = {a} - SB", stack]
        if placement == "stack":
            return [*setup, f"o = {a} - SB", f"if SO <= o and o <= SO{size}: {stack}", slow]
        input_test = [
            f"o = {a} - IB",
            f"if 0 <= o and o <= IL{size}: {d} = {wrap.format(_read('ib', 'i', size, views))}",
        ]
        if placement == "input":
            return [*setup, *input_test, slow]
        if placement == "stack first":
            return [
                *setup,
                f"o = {a} - SB",
                f"if SO <= o and o <= SO{size}: {stack}",
                f"elif 0 <= (o := {a} - IB) and o <= IL{size}: "
                f"{d} = {wrap.format(_read('ib', 'i', size, views))}",
                slow,
            ]
        return [
            *setup,
            *input_test,
            f"elif SO <= (o := {a} - SB) and o <= SO{size}: {stack}",
            slow,
        ]

    @staticmethod
    def _frame_read(size: int, depth: int) -> str:
        """The value ``depth`` bytes below the frame top (which is 8-aligned)."""
        if size == 1:
            return f"sb[FO - {depth}]"
        if _VIEWS and depth % size == 0:
            return f"s{size}[F{size} - {depth // size}]"
        return f"{UNPACK[size]}(sb, FO - {depth})[0]"

    def _store(self, pc: int, insn: Instruction, state: ranges.State) -> list[str]:
        size = insn.spec.size
        size_mask = WIDTH_MASK[size * 8]
        if insn.spec.form is Form.STORE_IMM:
            value = hex(insn.imm & size_mask)
        elif state[insn.src][1] <= size_mask:
            value = f"r{insn.src}"
        else:
            value = f"r{insn.src} & {size_mask:#x}"
        if in_current_frame(insn.dst, insn.off, size, self.frame_size):
            depth = -insn.off
            if size == 1:
                return [f"sb[FO - {depth}] = {value}"]
            if _VIEWS and depth % size == 0:
                return [f"s{size}[F{size} - {depth // size}] = {value}"]
            return [f"{PACK[size]}(sb, FO - {depth}, {value})"]
        setup, a = self._address(insn.dst, insn.off)
        views = self._packet_views(self._current)
        if pc in self._hoisted:  # inside the writable input on every pass
            return [
                _input_offset(insn.dst, insn.off),
                *_write("ib", "i", size, value, views, self._hoisted[pc]),
            ]
        aligned = self._stack_aligned(insn.dst, insn.off, size, state)
        stack = _write("sb", "s", size, value, _VIEWS, aligned)
        slow = f"else: mem.store({a} & {MASK64:#x}, {size}, {value}, {pc})"
        placement = self._placement(insn.dst, insn.off, size, state)
        if placement == "frame":
            word = _frame_item(insn.dst, insn.off, size, aligned)
            if word is not None:
                return [f"{word} = {value}"]
            return [*setup, f"o = {a} - SB", *stack]
        if placement == "stack":
            return [
                *setup,
                f"o = {a} - SB",
                f"if SO <= o and o <= SO{size}:",
                *_indent(stack),
                slow,
            ]
        input_test = [f"o = {a} - IB", f"if 0 <= o and o <= IW{size}:"]
        input_test += _indent(_write("ib", "i", size, value, views))
        if placement == "input":
            return [*setup, *input_test, slow]
        if placement == "stack first":
            return [
                *setup,
                f"o = {a} - SB",
                f"if SO <= o and o <= SO{size}:",
                *_indent(stack),
                f"elif 0 <= (o := {a} - IB) and o <= IW{size}:",
                *_indent(_write("ib", "i", size, value, views)),
                slow,
            ]
        return [
            *setup,
            *input_test,
            f"elif SO <= (o := {a} - SB) and o <= SO{size}:",
            *_indent(stack),
            slow,
        ]

    @staticmethod
    def _atomic(pc: int, insn: Instruction) -> list[str]:
        spec = insn.spec
        mask = hex(WIDTH_MASK[spec.width])
        address = f"(r{insn.dst} + {insn.off}) & {MASK64:#x}"
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


def _leading_exit(lines: list[str]) -> tuple[str, list[str], list[str]] | None:
    """A loop body that begins ``if COND:`` with simple statements ending in ``break``
    (and no ``else``), split into COND, those statements without the ``break``, and
    the rest: the loop is then ``while not (COND): rest`` with the statements in its
    ``else`` clause, which runs exactly when COND stops it (one jump less per pass)."""
    head = lines[0]
    if not head.startswith("if ") or not head.endswith(":"):
        return None
    end = 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    block = [line[4:] for line in lines[1:end]]
    rest = lines[end:]
    if not block or block[-1] != "break" or not rest or rest[0].startswith(("elif", "else")):
        return None
    if any(
        line.startswith((" ", "break", "continue")) or line.endswith(":") for line in block[:-1]
    ):
        return None
    return head[3:-1], block[:-1], rest


def _passes_done(function: Function, loop: Loop, counted: Counted) -> str | None:
    """The passes a counted loop has made, as code from its counter and ``k0`` (the
    counter before the loop), when every pass runs all its blocks: they run in a
    row, each but the last leaving the loop by a conditional jump or going on to
    the next (a callee written out in place included), the last stepping the
    counter and jumping back with ``ja``.  Then every way out, which comes before
    the step, has seen ``(counter - k0) / step`` whole passes of
    :attr:`Counted.length` instructions.  None for any other loop."""
    _pc, final = function.blocks[loop.last][1][-1]
    if final.spec.op is not Op.JA or function.targets[loop.last] != loop.first:
        return None
    if loop.has_guards or counted.updated_first:
        return None
    for index in range(loop.first, loop.last):
        target = function.targets[index]
        if target is not None and target in loop:
            return None  # a jump inside the loop: passes differ in length
        if index in function.skips or not function.merges_into_next(index, loop.last):
            return None
        op = function.blocks[index][1][-1][1].spec.op
        if op in BLOCK_ENDING_OPS and op not in _CONDITIONS and op is not Op.CALL_LOCAL:
            return None  # an exit or a packet load, which would count without the passes
    if not any(
        counted.counter in ranges.written(insn) for _pc, insn in function.blocks[loop.last][1]
    ):
        return None  # the step is not in the last block: ways out may follow it
    step = counted.step
    moved = f"(r{counted.counter} - k0)" if step > 0 else f"(k0 - r{counted.counter})"
    return f"{counted.length} * ({moved} & {MASK64:#x}) // {abs(step)}"


@dataclass(frozen=True)
class _Walk:
    """A load or store of a one-block counted loop whose base steps by a constant."""

    pc: int
    test: str
    """Code, true before the loop when every pass's access is inside the input (and
    aligned, when ``aligned``), given ``trips`` (the passes after the first)."""
    aligned: bool


def _input_offset(base: int, off: int) -> str:
    """``o``, the offset in the input of ``[base + off]``."""
    return f"o = r{base} + {off} - IB" if off else f"o = r{base} - IB"


def _input_walks(function: Function, loop: Loop, views: bool) -> list[_Walk]:
    """The input accesses of a one-block counted loop whose address moves by a
    constant each pass (:func:`~pybpf.verifier.counted.walks`).  The block runs
    ``trips + 1`` times, so such an access reaches ``first``, ``first + step``, ...
    ``first + trips * step``; a test of both ends against the input's bounds before
    the loop replaces the test of every pass (a failed one takes the copy of the
    loop that tests each access).  The ends are sums of unreduced register values:
    one the test passes is below 2**64, so it is the address itself."""
    body = function.blocks[loop.first][1]
    found: list[_Walk] = []
    for walk in walks([insn for _pc, insn in body]):
        start, step, size = walk.start, walk.step, walk.size
        bases = " + ".join(f"r{base}" for base in walk.bases)
        first = f"{bases} + {start} - IB" if start else f"{bases} - IB"
        last = f"{first} + {step} * trips"
        low, high = (first, last) if step >= 0 else (last, first)
        bound = f"IW{size}" if walk.write else f"IL{size}"
        test = f"0 <= {low} and {high} <= {bound}"
        aligned = views and size > 1 and step % size == 0
        if aligned:
            test += f" and not ({first}) & {size - 1}"
        found.append(_Walk(body[walk.index][0], test, aligned))
    return found
