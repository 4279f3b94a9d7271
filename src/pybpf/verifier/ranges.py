"""Unsigned value ranges and known low bits of registers, so generated code can
leave out masks, alignment tests and region tests.

A forward analysis over one function's blocks: each register holds an interval
``(low, high)`` of the unsigned 64-bit values it may have, and its value modulo
``2**k`` for a known ``k <= LOW_BITS_MAX`` (a congruence: ``r3 = 4`` then
``r3 += 4`` keeps ``r3 % 4 == 0``).  Each interval is kept tight against its
congruence, so ``r3 < 256`` with ``r3 % 4 == 0`` gives ``r3 <= 252``.
Instructions map facts to facts, conditional jumps narrow them on each edge
(after ``jlt r3, r4`` falls through, ``r3 >= r4.low``), and loop headers widen
what keeps growing to the full range after a few arrivals over the loop's own
backward jumps (arrivals from outside do not count, so an inner loop settles
anew for each state its enclosing loop brings).

An access that succeeded also tells something: its address lay in a region, and
every region lies in ``[1, 2**32)``, so afterwards the base register is known to
be in ``[1 - off, 2**32 - size - off]`` when that cannot wrap (``off <= 0``, or
a base that cannot reach the top of the 64-bit range).  After ``ldxh r5, [r3]``
the step ``r3 += 2`` cannot carry out of 64 bits.

The generated code uses the result to drop reductions that cannot change a value
(``& mask`` after an addition that cannot carry out), alignment tests whose
outcome is known, and the region tests of accesses proven inside the current
stack frame, so the analysis must over-approximate every run.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

from pybpf.isa.instruction import Instruction, written_registers
from pybpf.isa.semantics import ATOMIC_OPS, MASK32, MASK64, WIDTH_MASK, immediate_operand
from pybpf.isa.table import Form, Op
from pybpf.runtime.memory import ADDRESS_SPACE_END

Range = tuple[int, int]
"""Lowest and highest unsigned value a register may hold."""

State = list[Range]
"""The ranges of r0-r10, then (at ``STACKISH + n``) whether register n holds a stack
address: ``(1, 1)`` always, ``(0, 0)`` never, ``(0, 1)`` sometimes, then (at
``LOW_BITS + n``) register n's known low bits ``(k, c)``: its value is ``c`` modulo
``2**k``.  The second part is a guess for ordering memory tests, never relied on
for correctness; the others must hold on every run."""

STACKISH = 11
LOW_BITS = 22
LOW_BITS_MAX = 3
"""Low bits are followed up to 8-byte alignment, the widest access."""

NOWHERE: Range = (0, 0)
STACK: Range = (1, 1)
UNKNOWN_BITS: Range = (0, 0)


def entry_state(r10: Range) -> State:
    """Facts on entry to a function: anything, but r10 in ``r10``, a stack address
    and 8-aligned (frame tops are: the stack size is a multiple of 8)."""
    bits = [UNKNOWN_BITS] * 10 + [(LOW_BITS_MAX, 0)]
    return [FULL] * 10 + [r10] + [NOWHERE] * 10 + [STACK] + bits


def unknown_state() -> State:
    return [FULL] * 11 + [(0, 1)] * 11 + [UNKNOWN_BITS] * 11


FULL: Range = (0, MASK64)

_WIDEN_AFTER = 2
"""Arrivals over its loop's backward jumps that change a loop header's state before
growing bounds of registers the loop writes jump to the full range; arrivals from
outside the loop do not count, so an inner loop settles anew for each state its
enclosing loop brings (widening there bounds how often that happens)."""

_WIDEN_ALL_AFTER = 6
"""Visits of a loop header before growing bounds of every register do (termination)."""

_MAX_STEPS_PER_BLOCK = 200
"""A bound on the analysis' work: past it every block is given the unknown state
(true of every run; blocks not reached yet may still be reachable), so compilation
time stays linear in the worst case."""


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


def low_bits(state: State, register: int) -> Range:
    """Register ``register``'s known low bits ``(k, c)`` (exact for a constant)."""
    low, high = state[register]
    if low == high:
        return (LOW_BITS_MAX, low & ((1 << LOW_BITS_MAX) - 1))
    return state[LOW_BITS + register]


def _constant_bits(value: int) -> Range:
    return (LOW_BITS_MAX, value & ((1 << LOW_BITS_MAX) - 1))


def _bits(k: int, c: int) -> Range:
    return (k, c & ((1 << k) - 1))


def _known_prefix(known: int, value: int) -> Range:
    """Low bits from a mask of known bit positions: the run of known ones from bit 0."""
    k = 0
    while k < LOW_BITS_MAX and known >> k & 1:
        k += 1
    return _bits(k, value)


def _mask(bits: Range) -> int:
    return (1 << bits[0]) - 1


def _and_bits(a: Range, b: Range) -> Range:
    ka, kb = _mask(a), _mask(b)
    return _known_prefix((ka & kb) | (ka & ~a[1]) | (kb & ~b[1]), a[1] & b[1])


def _or_bits(a: Range, b: Range) -> Range:
    ka, kb = _mask(a), _mask(b)
    return _known_prefix((ka & kb) | (ka & a[1]) | (kb & b[1]), a[1] | b[1])


def _shift_bits(a: Range, b: Range, left: bool) -> Range:
    if b[0] < LOW_BITS_MAX:
        return UNKNOWN_BITS  # the amount is not known
    amount = b[1]  # a constant amount: its low bits hold it when below 8
    if left:
        return _bits(min(a[0] + amount, LOW_BITS_MAX), a[1] << amount)
    return _bits(max(a[0] - amount, 0), a[1] >> amount)


LOW_BITS_RESULT: dict[Op, Callable[[Range, Range], Range]] = {
    Op.ADD: lambda a, b: _bits(min(a[0], b[0]), a[1] + b[1]),
    Op.SUB: lambda a, b: _bits(min(a[0], b[0]), a[1] - b[1]),
    Op.MUL: lambda a, b: _bits(min(a[0], b[0]), a[1] * b[1]),
    Op.AND: _and_bits,
    Op.OR: _or_bits,
    Op.XOR: lambda a, b: _bits(min(a[0], b[0]), a[1] ^ b[1]),
    Op.MOV: lambda a, b: b,
    Op.LSH: lambda a, b: _shift_bits(a, b, True),
    Op.RSH: lambda a, b: _shift_bits(a, b, False),
}
"""The known low bits of ``dst OP src`` from the operands' (both operations and
reductions to 32 or 64 bits keep the low bits); operations not listed: unknown."""


def _operand_bits(insn: Instruction, state: State) -> tuple[Range, Range]:
    a = low_bits(state, insn.dst)
    if insn.spec.form in (Form.ALU_IMM, Form.COND_IMM):
        return a, _constant_bits(immediate_operand(insn.imm, insn.spec.width))
    return a, low_bits(state, insn.src)


def _shift_amount_bits(insn: Instruction, state: State) -> Range:
    """A shift's amount as low bits: known only when constant and below 8."""
    _a, b = operands(insn, state)
    amount = _shift_amount(b, insn.spec.width)
    if amount is None or amount >= 1 << LOW_BITS_MAX:
        return UNKNOWN_BITS
    return (LOW_BITS_MAX, amount)


def _result_bits(insn: Instruction, state: State) -> Range:
    """The known low bits of the register ``insn`` writes (before it writes it)."""
    op = insn.spec.op
    if op in LOW_BITS_RESULT:
        a, b = _operand_bits(insn, state)
        if op in (Op.LSH, Op.RSH):
            b = _shift_amount_bits(insn, state)
        return LOW_BITS_RESULT[op](a, b)
    if op is Op.NEG:
        a = low_bits(state, insn.dst)
        return _bits(a[0], -a[1])
    if op in (Op.LE, Op.MOVSX):
        # a cut to 16 bits or more, a sign extension from 8 bits or more
        return low_bits(state, insn.src if op is Op.MOVSX else insn.dst)
    return UNKNOWN_BITS


def tighten(value: Range, bits: Range) -> Range | None:
    """``value`` with both ends moved in to the nearest values with low bits ``bits``;
    None if it holds no such value."""
    k, c = bits
    if k == 0:
        return value
    modulus = 1 << k
    low = value[0] + (c - value[0]) % modulus
    high = value[1] - (value[1] - c) % modulus
    return (low, high) if low <= high else None


def _settle(state: State, register: int) -> bool:
    """Make a register's range and low bits agree; False if no value fits both."""
    low, high = state[register]
    if low == high:
        state[LOW_BITS + register] = _constant_bits(low)
        return True
    tight = tighten((low, high), state[LOW_BITS + register])
    if tight is None:
        return False
    state[register] = tight
    if tight[0] == tight[1]:
        state[LOW_BITS + register] = _constant_bits(tight[0])
    return True


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


ACCESSED = (1, ADDRESS_SPACE_END)
"""Addresses an access can succeed at: regions lie above 0 and below ``2**32``."""


def access_base(insn: Instruction) -> int:
    """The register holding a load's, store's or atomic's base address."""
    return insn.src if insn.spec.op in _LOADS else insn.dst


def _accessed(insn: Instruction, state: State) -> None:
    """Narrow a load's or store's base register to what the access succeeding means."""
    base = access_base(insn)
    off, size = insn.off, insn.spec.size
    low, high = state[base]
    if off > 0 and high + off > MASK64:
        return  # the address may wrap to a small one: the base may be near 2**64
    narrowed = (max(low, ACCESSED[0] - off), min(high, ACCESSED[1] - size - off))
    if narrowed[0] <= narrowed[1]:
        state[base] = narrowed
        _settle(state, base)


_LOADS = (Op.LOAD, Op.LOADSX)
ACCESS_OPS = frozenset({*_LOADS, Op.STORE, Op.ATOMIC_CMPXCHG, *ATOMIC_OPS})
PLAIN_ACCESS_OPS = frozenset({*_LOADS, Op.STORE})
"""Loads and stores that are not atomics."""
"""Operations that read or write memory at ``base + off`` (legacy packet loads aside)."""


def step(insn: Instruction, state: State) -> None:
    """Apply an instruction that does not end its block (or a call) to ``state``."""
    spec = insn.spec
    op = spec.op
    if op in ACCESS_OPS:
        _accessed(insn, state)
    written_now = written(insn)
    bits = _result_bits(insn, state)
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
    for register in written_now:
        state[LOW_BITS + register] = bits if register == insn.dst else UNKNOWN_BITS
        _settle(state, register)
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

NEGATION = {
    Op.JLT: Op.JGE,
    Op.JLE: Op.JGT,
    Op.JGT: Op.JLE,
    Op.JGE: Op.JLT,
    Op.JEQ: Op.JNE,
    Op.JNE: Op.JEQ,
}
"""The unsigned comparison that holds when one does not (a jump falling through)."""


def narrow(insn: Instruction, state: State, taken: bool) -> State | None:
    """``state`` on one edge of a conditional jump; None if that edge cannot be taken."""
    op = insn.spec.op if taken else NEGATION.get(insn.spec.op)
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
    if op is Op.JEQ and registers[1] is not None:
        # equal values have equal low bits: each side learns the other's
        common = _meet_bits(low_bits(state, insn.dst), low_bits(state, registers[1]))
        if common is None:
            return None
        for register in registers:
            if register is not None:
                result[LOW_BITS + register] = common
    for register, value in zip(registers, (a, b), strict=True):
        if register is not None:
            result[register] = value
            if not _settle(result, register):
                return None
    return result


def _meet_bits(x: Range, y: Range) -> Range | None:
    """The low bits of a value both facts describe; None if they contradict."""
    k = min(x[0], y[0])
    if (x[1] - y[1]) % (1 << k):
        return None
    return x if x[0] >= y[0] else y


def _join_bits(x: Range, y: Range) -> Range:
    """The low bits two facts agree on."""
    k = min(x[0], y[0])
    while k and (x[1] - y[1]) % (1 << k):
        k -= 1
    return _bits(k, x[1])


def join(old: State, new: State) -> State:
    joined = [
        (min(x[0], y[0]), max(x[1], y[1])) if x != y else x
        for x, y in zip(old[:LOW_BITS], new[:LOW_BITS], strict=True)
    ]
    joined += [_join_bits(low_bits(old, n), low_bits(new, n)) for n in range(STACKISH)]
    for register in range(STACKISH):
        _settle(joined, register)  # a join of constants may know fewer bits
    return joined


def widen(old: State, new: State, registers: frozenset[int]) -> State:
    """``new`` (which contains ``old``) with each bound of ``registers`` that moved
    pushed to the end of the range (then in to the known low bits)."""
    widened = [
        (x[0] if y[0] >= x[0] else 0, x[1] if y[1] <= x[1] else MASK64)
        if register in registers
        else y
        for register, (x, y) in enumerate(zip(old[:STACKISH], new[:STACKISH], strict=True))
    ]
    widened += new[STACKISH:]
    for register in range(STACKISH):
        _settle(widened, register)
    return widened


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
    """Changes of each header's state brought by its loop's backward jumps."""
    states[0] = entry
    work = [0]
    queued = {0}
    steps = 0
    while work:
        steps += 1
        if steps > _MAX_STEPS_PER_BLOCK * count:
            return [unknown_state() for _ in states]
        index = heapq.heappop(work)
        queued.discard(index)
        state = states[index]
        if state is None:
            continue
        for successor, out in successors(index, through(index, list(state))):
            old = states[successor]
            backward = successor <= index
            if old is None:
                new = out
            else:
                new = join(old, out)
                if backward and successor in headers and visits[successor] >= _WIDEN_AFTER:
                    loop_writes = headers[successor]
                    if visits[successor] >= _WIDEN_ALL_AFTER:
                        loop_writes = ALL_REGISTERS
                    new = widen(old, new, loop_writes)
                if new == old:
                    continue
            states[successor] = new
            visits[successor] += backward
            if successor not in queued:
                queued.add(successor)
                heapq.heappush(work, successor)
    return states
