"""Unsigned value ranges of registers, so generated code can leave out masks.

A forward analysis over one function's blocks: each register holds an interval
``(low, high)`` of the unsigned 64-bit values it may have.  Instructions map
intervals to intervals, conditional jumps narrow them on each edge (after
``jlt r3, r4`` falls through, ``r3 >= r4.low``), and loop headers widen what
keeps growing to the full range, so the fixpoint is reached in a few passes.

The generated code relies on the result only to drop reductions that cannot
change a value (``& mask`` after an addition that cannot carry out, a 32-bit
operand's mask when the register is already below 2**32): memory safety never
depends on it, every access is still checked.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from pybpf.isa.instruction import Instruction, written_registers
from pybpf.isa.semantics import MASK32, MASK64, WIDTH_MASK, immediate_operand
from pybpf.isa.table import Form, Op

Range = tuple[int, int]
"""Lowest and highest unsigned value a register may hold."""

State = list[Range]
"""The ranges of r0-r10, then (at ``STACKISH + n``) whether register n holds a stack
address: ``(1, 1)`` always, ``(0, 0)`` never, ``(0, 1)`` sometimes.  That second half
is a guess for ordering memory tests, never relied on for correctness."""

STACKISH = 11

NOWHERE: Range = (0, 0)
STACK: Range = (1, 1)


def entry_state(r10: Range) -> State:
    """Ranges on entry to a function: anything, but r10 in ``r10`` and a stack address."""
    return [FULL] * 10 + [r10] + [NOWHERE] * 10 + [STACK]


def unknown_state() -> State:
    return [FULL] * 11 + [(0, 1)] * 11


FULL: Range = (0, MASK64)

_WIDEN_AFTER = 2
"""Visits of a loop header before growing bounds of registers its loop writes jump to
the full range."""

_WIDEN_ALL_AFTER = 6
"""Visits of a loop header before growing bounds of every register do (termination)."""


def cut(value: Range, width: int) -> Range:
    """The range of a register's low ``width`` bits."""
    mask = WIDTH_MASK[width]
    return value if value[1] <= mask else (0, mask)


def _ones(high: int) -> int:
    """The smallest all-ones number at least ``high``: a bound for OR and XOR."""
    return (1 << high.bit_length()) - 1


def _shift_amount(b: Range, width: int) -> int | None:
    return b[0] & (width - 1) if b[0] == b[1] else None


def _lsh(a: Range, b: Range, width: int) -> Range:
    amount = _shift_amount(b, width)
    if amount is None:
        return (0, a[1] << (width - 1))
    return (a[0] << amount, a[1] << amount)


def _rsh(a: Range, b: Range, width: int) -> Range:
    amount = _shift_amount(b, width)
    return (0, a[1]) if amount is None else (a[0] >> amount, a[1] >> amount)


def _div(a: Range, b: Range, width: int) -> Range:
    # division by zero gives 0 (RFC 9669 4.1)
    return (0, a[1]) if b[0] == 0 else (a[0] // b[1], a[1] // b[0])


def _mod(a: Range, b: Range, width: int) -> Range:
    # modulo by zero leaves the dividend (RFC 9669 4.1)
    return (0, a[1]) if b[0] == 0 else (0, min(a[1], b[1] - 1))


def _anything(a: Range, b: Range, width: int) -> Range:
    return (0, WIDTH_MASK[width])


RAW_RESULT: dict[Op, Callable[[Range, Range, int], Range]] = {
    Op.ADD: lambda a, b, w: (a[0] + b[0], a[1] + b[1]),
    Op.SUB: lambda a, b, w: (a[0] - b[1], a[1] - b[0]),
    Op.MUL: lambda a, b, w: (a[0] * b[0], a[1] * b[1]),
    Op.LSH: _lsh,
    Op.RSH: _rsh,
    Op.AND: lambda a, b, w: (0, min(a[1], b[1])),
    Op.OR: lambda a, b, w: (max(a[0], b[0]), _ones(max(a[1], b[1]))),
    Op.XOR: lambda a, b, w: (0, _ones(max(a[1], b[1]))),
    Op.MOV: lambda a, b, w: b,
    Op.DIV: _div,
    Op.MOD: _mod,
    Op.SDIV: _anything,
    Op.SMOD: _anything,
    Op.ARSH: _anything,
}
"""The interval of ``dst OP src`` before reduction to the width, from the operands'
intervals (already cut to the width): outside ``[0, mask]`` means it may wrap."""


def operands(insn: Instruction, state: State) -> tuple[Range, Range]:
    """The ranges of an ALU or jump instruction's operands, cut to its width."""
    width = insn.spec.width
    a = cut(state[insn.dst], width)
    if insn.spec.form in (Form.ALU_IMM, Form.COND_IMM):
        value = immediate_operand(insn.imm, width)
        return a, (value, value)
    return a, cut(state[insn.src], width)


def binary(insn: Instruction, state: State) -> tuple[Range, bool]:
    """The result range of an ALU instruction, and whether its raw result may wrap."""
    width = insn.spec.width
    a, b = operands(insn, state)
    low, high = RAW_RESULT[insn.spec.op](a, b, width)
    if low < 0 or high > WIDTH_MASK[width]:
        return (0, WIDTH_MASK[width]), True
    return (low, high), False


def _size_range(size: int) -> Range:
    return (0, WIDTH_MASK[size * 8])


def step(insn: Instruction, state: State) -> None:
    """Apply an instruction that does not end its block (or a call) to ``state``."""
    spec = insn.spec
    op = spec.op
    if op in RAW_RESULT:
        state[insn.dst] = binary(insn, state)[0]
    elif op is Op.LE:
        state[insn.dst] = cut(state[insn.dst], spec.size * 8)
    elif op in _SIZED_RESULT:
        state[insn.dst] = _size_range(spec.size if op is not Op.NEG else spec.width // 8)
    elif op in (Op.MOVSX, Op.LOADSX):
        state[insn.dst] = (0, WIDTH_MASK[spec.width])
    elif op is Op.LDDW:
        value = insn.imm & MASK64
        state[insn.dst] = (value, value)
    elif op is Op.LOAD:
        state[insn.dst] = _size_range(spec.size)
    elif op is Op.ATOMIC_CMPXCHG:
        state[0] = _size_range(spec.size)
    elif spec.fetch:
        state[insn.src] = _size_range(spec.size)
    elif op in (Op.CALL, Op.CALLX):
        state[0] = FULL  # helpers leave r1-r5 as they were
    elif op is Op.CALL_LOCAL:
        state[0:6] = [FULL] * 6
    elif op in (Op.LD_ABS, Op.LD_IND):
        state[0] = _size_range(spec.size)
    _follow_pointers(insn, state)


def _follow_pointers(insn: Instruction, state: State) -> None:
    """Stack addresses move with ``mov`` and survive adding or subtracting offsets."""
    spec = insn.spec
    dst = STACKISH + insn.dst
    if spec.width == 64 and spec.op in (Op.MOV, Op.ADD, Op.SUB):
        if spec.form is Form.ALU_IMM:
            if spec.op is Op.MOV:
                state[dst] = NOWHERE
            return
        src = state[STACKISH + insn.src]
        if spec.op is Op.MOV:
            state[dst] = src
        elif spec.op is Op.ADD:
            state[dst] = (max(state[dst][0], src[0]), max(state[dst][1], src[1]))
        return
    for register in written(insn):
        state[STACKISH + register] = NOWHERE


_SIZED_RESULT = frozenset({Op.BE, Op.BSWAP, Op.NEG})


def _below(value: Range, bound: int) -> Range:
    return (value[0], min(value[1], bound))


def _above(value: Range, bound: int) -> Range:
    return (max(value[0], bound), value[1])


def _lt(a: Range, b: Range) -> tuple[Range, Range]:
    return _below(a, b[1] - 1), _above(b, a[0] + 1)


def _le(a: Range, b: Range) -> tuple[Range, Range]:
    return _below(a, b[1]), _above(b, a[0])


def _eq(a: Range, b: Range) -> tuple[Range, Range]:
    both = (max(a[0], b[0]), min(a[1], b[1]))
    return both, both


def _ne(a: Range, b: Range) -> tuple[Range, Range]:
    return _not_point(a, b), _not_point(b, a)


def _not_point(value: Range, other: Range) -> Range:
    """``value`` known to differ from ``other``: an end equal to a constant moves in."""
    if other[0] != other[1]:
        return value
    low, high = value
    if low == other[0]:
        low += 1
    if high == other[0]:
        high -= 1
    return (low, high)


_NARROW: dict[Op, tuple[Callable[[Range, Range], tuple[Range, Range]], bool]] = {
    Op.JLT: (_lt, False),
    Op.JLE: (_le, False),
    Op.JGT: (_lt, True),
    Op.JGE: (_le, True),
    Op.JEQ: (_eq, False),
    Op.JNE: (_ne, False),
}
"""What an unsigned comparison's truth says about ``(dst, src)``; True: operands swapped."""

_NEGATION = {
    Op.JLT: Op.JGE,
    Op.JLE: Op.JGT,
    Op.JGT: Op.JLE,
    Op.JGE: Op.JLT,
    Op.JEQ: Op.JNE,
    Op.JNE: Op.JEQ,
}


def narrow(insn: Instruction, state: State, taken: bool) -> State | None:
    """``state`` on one edge of a conditional jump; None if that edge cannot be taken."""
    op = insn.spec.op if taken else _NEGATION.get(insn.spec.op)
    if op is None or op not in _NARROW:
        return state
    width = insn.spec.width
    registers = (insn.dst, None if insn.spec.form is Form.COND_IMM else insn.src)
    if registers[0] == registers[1]:
        return state
    if width == 32 and any(r is not None and state[r][1] > MASK32 for r in registers):
        return state  # the comparison saw only the low halves
    a, b = operands(insn, state)
    rule, swapped = _NARROW[op]
    if swapped:
        b, a = rule(b, a)
    else:
        a, b = rule(a, b)
    if a[0] > a[1] or b[0] > b[1]:
        return None
    result = list(state)
    for register, value in zip(registers, (a, b), strict=True):
        if register is not None:
            result[register] = value
    return result


def join(old: State, new: State) -> State:
    return [
        (min(x[0], y[0]), max(x[1], y[1])) if x != y else x for x, y in zip(old, new, strict=True)
    ]


def widen(old: State, new: State, registers: frozenset[int]) -> State:
    """``new`` (which contains ``old``) with each bound of ``registers`` that moved
    pushed to the end of the range."""
    return [
        (x[0] if y[0] >= x[0] else 0, x[1] if y[1] <= x[1] else MASK64)
        if register in registers
        else y
        for register, (x, y) in enumerate(zip(old, new, strict=True))
    ]


ALL_REGISTERS = frozenset(range(11))


def written(insn: Instruction) -> frozenset[int]:
    """The registers an instruction may change."""
    return frozenset(written_registers(insn))


ARITHMETIC_OPS = frozenset({*RAW_RESULT, *_SIZED_RESULT, Op.LE, Op.MOVSX, Op.LDDW})
"""Operations on registers alone: they cannot fault."""


Successors = Callable[[int, State], list[tuple[int, State]]]
"""The states a block hands to its successors, given the state at its end."""


def fixpoint(
    count: int,
    entry: State,
    through: Callable[[int, State], State],
    successors: Successors,
    headers: dict[int, frozenset[int]],
) -> list[State | None]:
    """Entry states of ``count`` blocks (None: unreachable), starting with block 0.

    ``through(i, state)`` runs block ``i``'s straight-line part; ``headers`` are the
    blocks where bounds that keep growing are widened, with the registers their
    loops write (only those are widened at first: the others grow only because an
    enclosing loop does, which widens them itself).
    """
    states: list[State | None] = [None] * count
    visits = [0] * count
    states[0] = entry
    work = [0]
    queued = {0}
    while work:
        index = heapq.heappop(work)
        queued.discard(index)
        state = states[index]
        if state is None:
            continue
        for successor, out in successors(index, through(index, list(state))):
            old = states[successor]
            if old is None:
                new = out
            else:
                new = join(old, out)
                if successor in headers and visits[successor] >= _WIDEN_AFTER:
                    loop_writes = headers[successor]
                    if visits[successor] >= _WIDEN_ALL_AFTER:
                        loop_writes = ALL_REGISTERS
                    new = widen(old, new, loop_writes)
                if new == old:
                    continue
            states[successor] = new
            visits[successor] += 1
            if successor not in queued:
                queued.add(successor)
                heapq.heappush(work, successor)
    return states
