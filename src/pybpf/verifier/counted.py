"""Loops whose passes a counter bounds, so the budget can be tested once before them.

A loop qualifies when it holds no other loop, every backward jump in it goes to
its first block, it calls nothing (a call written out in place is fine), and a
*counter* register is written in it exactly once, by ``add`` or ``sub`` of a
constant (64-bit), in a block every pass runs, and tested against a *bound*
(a constant, or a register the loop never writes) by a 64-bit unsigned jump in
a block every pass runs, one edge of which leaves the loop.

The test's continuing edge then says how the counter must compare with the
bound for a pass to go on; from the counter's value at the first test, the bound
and the step, :data:`TRIPS` gives the most passes that can reach a backward jump.
Each pass runs at most :attr:`Counted.length` instructions, so if the budget
covers ``trips * length`` more instructions when the loop starts, none of the
budget tests at its backward jumps can fail, and a copy of the loop without
them runs instead (the loop as it is runs otherwise).  Both compiling tiers make
such copies (pycode for any counted loop, x86-64 for those whose passes run the
same blocks), and both test the *walks* (:func:`walks`: accesses whose address moves
by a constant each pass) of such a loop once for all its passes (pycode in loops of
one block).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import MASK64, immediate_operand
from pybpf.isa.table import Form, Op
from pybpf.verifier import ranges
from pybpf.verifier.ranges import NEGATION

NEVER = 1 << 64
"""More passes than any budget allows: the counter may never meet the bound."""


def _passes_ne(first: int, bound: int, step: int) -> int:
    """Passes while ``counter != bound``, stepping by a power of two (mod 2**64)."""
    distance = (bound - first if step > 0 else first - bound) & MASK64
    magnitude = abs(step)
    return NEVER if distance % magnitude else distance // magnitude


def _passes_lt(first: int, bound: int, step: int) -> int:
    """Passes while ``counter < bound``, counting up: none may carry past 2**64."""
    if bound - 1 + step > MASK64:
        return NEVER
    return -((first - bound) // step) if first < bound else 0


def _passes_le(first: int, bound: int, step: int) -> int:
    if bound + step > MASK64:
        return NEVER
    return (bound - first) // step + 1 if first <= bound else 0


def _passes_gt(first: int, bound: int, step: int) -> int:
    """Passes while ``counter > bound``, counting down: none may borrow below 0."""
    if bound + 1 + step < 0:
        return NEVER
    return -((bound - first) // -step) if first > bound else 0


def _passes_ge(first: int, bound: int, step: int) -> int:
    if bound + step < 0:
        return NEVER
    return (first - bound) // -step + 1 if first >= bound else 0


TRIPS: dict[Op, Callable[[int, int, int], int]] = {
    Op.JNE: _passes_ne,
    Op.JLT: _passes_lt,
    Op.JLE: _passes_le,
    Op.JGT: _passes_gt,
    Op.JGE: _passes_ge,
}
"""The most passes that go on, by the comparison that lets a pass go on (counter
on the left): ``(counter at the first test, bound, step) -> passes``."""


def _power_of_two(step: int) -> bool:
    magnitude = abs(step)
    return magnitude & (magnitude - 1) == 0


_STEP_OK: dict[Op, Callable[[int], bool]] = {
    Op.JNE: _power_of_two,
    Op.JLT: lambda step: step > 0,
    Op.JLE: lambda step: step > 0,
    Op.JGT: lambda step: step < 0,
    Op.JGE: lambda step: step < 0,
}
"""Steps for which :data:`TRIPS` is exact for the comparison."""

_SWAPPED = {Op.JEQ: Op.JEQ, Op.JNE: Op.JNE, Op.JLT: Op.JGT, Op.JGT: Op.JLT}
_SWAPPED |= {Op.JLE: Op.JGE, Op.JGE: Op.JLE}
"""``a OP b`` as ``b OP' a``."""

_STEPS = {Op.ADD: 1, Op.SUB: -1}
_TESTS = (Form.COND_IMM, Form.COND_REG)


@dataclass(frozen=True)
class Counted:
    """What the code before a counted loop needs to bound its passes."""

    counter: int
    step: int
    """What each pass adds to the counter (mod 2**64), signed."""
    condition: Op
    """The comparison ``counter OP bound`` under which a pass goes on (a key of TRIPS)."""
    bound: int | None
    """The bound's register, or None for the constant :attr:`constant`."""
    constant: int
    updated_first: bool
    """Whether each pass steps the counter before it tests it."""
    length: int
    """The most instructions a pass runs from the loop's start to a backward jump."""
    test_block: int
    """The block (of the :class:`LoopShape`) whose final jump is the counter's test."""


@dataclass(frozen=True)
class LoopShape:
    """The facts about one loop the analysis reads (indexes are the function's blocks)."""

    first: int
    last: int
    bodies: list[list[Instruction]]
    """Each block's instructions, for the blocks first to last."""
    targets: list[int | None]
    falls: list[bool]
    lengths: list[int]
    """Instructions each block adds to the count (its own and any callee written out)."""


def _predecessors(shape: LoopShape) -> dict[int, list[int]]:
    """Forward edges between the loop's blocks."""
    preds: dict[int, list[int]] = {i: [] for i in range(shape.first, shape.last + 1)}
    for i in range(shape.first, shape.last + 1):
        target = shape.targets[i - shape.first]
        if target is not None and i < target <= shape.last:
            preds[target].append(i)
        if shape.falls[i - shape.first] and i + 1 <= shape.last:
            preds[i + 1].append(i)
    return preds


def _dominators(shape: LoopShape, preds: dict[int, list[int]]) -> dict[int, set[int]]:
    """Blocks every path from the loop's start to each block runs (edges go forward)."""
    everything = set(preds)
    dominators: dict[int, set[int]] = {shape.first: {shape.first}}
    for i in range(shape.first + 1, shape.last + 1):
        reached = [dominators[p] for p in preds[i] if p in dominators]
        if reached:
            dominators[i] = set.intersection(*reached) | {i}
        else:
            dominators[i] = everything  # not entered from the start: never runs
    return dominators


def _longest(shape: LoopShape, preds: dict[int, list[int]]) -> dict[int, int]:
    """The most instructions from the loop's start to each block's end."""
    longest: dict[int, int] = {}
    for i in range(shape.first, shape.last + 1):
        before = [longest[p] for p in preds[i] if p in longest]
        if i == shape.first or before:
            longest[i] = max(before, default=0) + shape.lengths[i - shape.first]
    return longest


def counted_loop(shape: LoopShape, written: list[int]) -> Counted | None:
    """The counter bounding the loop's passes, if it has one (see the module doc).

    ``written`` has each register once for every instruction of the loop that may
    write it.  The caller checks that the loop holds no other loop, is entered only
    at its start and calls nothing but callees written out in place.
    """
    blocks = range(shape.first, shape.last + 1)
    backward = [i for i in blocks if (t := shape.targets[i - shape.first]) is not None and t <= i]
    if any(shape.targets[i - shape.first] != shape.first for i in backward) or not backward:
        return None
    preds = _predecessors(shape)
    dominators = _dominators(shape, preds)
    every_pass = set.intersection(*(dominators[i] for i in backward))
    longest = _longest(shape, preds)
    length = max(longest.get(i, 0) for i in backward)
    for test_block in sorted(every_pass):
        found = _test_in(shape, test_block, every_pass, dominators, written)
        if found is not None:
            counter, step, condition, bound, constant, updated_first = found
            return Counted(
                counter, step, condition, bound, constant, updated_first, length, test_block
            )
    return None


def constant_step(insn: Instruction, register: int) -> int | None:
    """The signed amount ``insn`` adds to ``register``, if it is a 64-bit ``add`` or
    ``sub`` of an immediate to it (else None)."""
    spec = insn.spec
    if (
        spec.op in _STEPS
        and spec.form is Form.ALU_IMM
        and spec.width == 64
        and insn.dst == register
    ):
        return _STEPS[spec.op] * insn.imm  # a 64-bit operation sign-extends imm
    return None


def _update(shape: LoopShape, counter: int, every_pass: set[int]) -> tuple[int, int] | None:
    """The block and signed step of the loop's one write of ``counter``, if that is
    a 64-bit ``add`` or ``sub`` of a constant in a block every pass runs."""
    for i in sorted(every_pass):
        for insn in shape.bodies[i - shape.first]:
            step = constant_step(insn, counter)
            if step is not None:
                return (i, step) if step else None
    return None


def _test_in(
    shape: LoopShape,
    block: int,
    every_pass: set[int],
    dominators: dict[int, set[int]],
    written: list[int],
) -> tuple[int, int, Op, int | None, int, bool] | None:
    """The counter, step, continuing comparison, bound and order of a block's final
    jump, if it is a counter test that can end the loop."""
    body = shape.bodies[block - shape.first]
    insn = body[-1]
    spec = insn.spec
    if spec.op not in NEGATION or spec.width != 64 or spec.form not in _TESTS:
        return None
    target = shape.targets[block - shape.first]
    taken_leaves = target is not None and not shape.first <= target <= shape.last
    falls_leave = block == shape.last and shape.falls[block - shape.first]
    if taken_leaves == falls_leave:
        return None  # both edges stay in the loop (or both leave it)
    condition = NEGATION[spec.op] if taken_leaves else spec.op
    register_bound = spec.form is Form.COND_REG
    candidates = [(insn.dst, insn.src if register_bound else None, condition)]
    if register_bound:
        candidates.append((insn.src, insn.dst, _SWAPPED[condition]))
    for counter, bound, op in candidates:
        if op not in TRIPS or written.count(counter) != 1 or counter == bound:
            continue
        if bound is not None and bound in written:
            continue
        update = _update(shape, counter, every_pass)
        if update is None:
            continue
        update_block, step = update
        if not _STEP_OK[op](step):
            continue
        updated_first = update_block in dominators[block]
        constant = immediate_operand(insn.imm, 64)
        return counter, step, op, bound, constant, updated_first
    return None


def one_block_loop(body: Sequence[Instruction]) -> Counted | None:
    """The counter of a loop of one block (``body``, ending in a conditional jump back
    to its own start), if it has one: such a loop leaves only by falling through its
    counter test, so it runs exactly ``trips + 1`` times (or until a fault)."""
    written = [reg for insn in body for reg in ranges.written(insn)]
    shape = LoopShape(0, 0, [list(body)], [0], [True], [len(body)])
    return counted_loop(shape, written)


@dataclass(frozen=True)
class Walk:
    """A load or store of a counted loop whose address moves by a constant each pass:
    pass ``j`` (from 0) reaches ``sum(bases) + start + j * step``, with ``bases`` the
    values of those registers as the loop begins."""

    index: int
    """The access's position in the pass (see :func:`walks`)."""
    bases: tuple[int, ...]
    """One or two registers the loop does not write, or steps by a constant once."""
    start: int
    step: int
    size: int
    write: bool


_Affine = tuple[tuple[int, ...], int, int]
"""A register's value in a pass as (bases, step, constant): the sum of the bases'
values at the loop's start, plus ``step`` times the pass number, plus the constant."""


def walks(body: Sequence[Instruction]) -> list[Walk]:
    """The walks among the plain loads and stores of one pass of a loop, ``body``
    being its instructions in the order every pass runs them (a one-block loop's
    block, or the blocks of a loop whose passes run them all).

    A register the loop does not write keeps its value; one it writes only by a
    64-bit ``add`` or ``sub`` of a constant steps by that much each pass; 64-bit
    moves, and additions of constants or of another such value (two bases at most),
    carry those forms through the pass.  Any other write makes a register unknown
    until it is written again in one of those ways.  Atomics are left out: their
    code keeps its checks.
    """
    writes: dict[int, list[int]] = {}
    for index, insn in enumerate(body):
        for register in ranges.written(insn):
            writes.setdefault(register, []).append(index)
    values: list[_Affine | None] = []
    for register in range(11):
        places = writes.get(register)
        if not places:
            values.append(((register,), 0, 0))
            continue
        step = constant_step(body[places[0]], register) if len(places) == 1 else None
        values.append(None if step is None else ((register,), step, 0))
    found: list[Walk] = []
    for index, insn in enumerate(body):
        spec = insn.spec
        if spec.op in ranges.PLAIN_ACCESS_OPS:
            value = values[ranges.access_base(insn)]
            if value is not None:
                bases, step, constant = value
                found.append(
                    Walk(index, bases, constant + insn.off, step, spec.size, spec.op is Op.STORE)
                )
        for register in ranges.written(insn):
            values[register] = _after(insn, register, values)
    return found


def _after(insn: Instruction, register: int, values: list[_Affine | None]) -> _Affine | None:
    """``register``'s form after ``insn`` writes it, from the forms before."""
    spec = insn.spec
    if spec.width != 64 or register != insn.dst:
        return None
    step = constant_step(insn, register)
    if step is not None:
        before = values[register]
        return None if before is None else (before[0], before[1], before[2] + step)
    if spec.form is not Form.ALU_REG or spec.op not in (Op.MOV, Op.ADD):
        return None
    source = values[insn.src]
    if spec.op is Op.MOV or source is None:
        return source
    before = values[register]
    if before is None or len(before[0]) + len(source[0]) > 2:
        return None
    return (before[0] + source[0], before[1] + source[1], before[2] + source[2])
