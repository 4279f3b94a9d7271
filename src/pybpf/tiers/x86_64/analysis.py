"""Program analyses the x86-64 compiler needs: where the meter is checked, what a
callee does that its call must prepare, and which stack bytes a batch record can touch.

They read the decoded program only; the compiler turns their answers into code.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from pybpf.isa.instruction import Instruction, written_registers
from pybpf.isa.table import INSTRUCTIONS, Form, InsnSpec, Op
from pybpf.program import NO_FALL_THROUGH, Block, Program
from pybpf.runtime.machine import in_current_frame

ATOMIC_OPS = frozenset(
    {
        Op.ATOMIC_ADD,
        Op.ATOMIC_OR,
        Op.ATOMIC_AND,
        Op.ATOMIC_XOR,
        Op.ATOMIC_XCHG,
        Op.ATOMIC_CMPXCHG,
    }
)
"""Every atomic read-modify-write: each is a checked store."""
_CALL_LOCAL = Op.CALL_LOCAL  # (tested per block: an enum attribute is a slow look-up)
_JUMP_LONG = Form.JUMP_LONG  # the one jump form whose offset is in imm
_JA = Op.JA


@dataclass(frozen=True)
class MeterPlan:
    """Where a function's meter is checked, and what each path is paid ahead.

    A checkpoint pays for the longest path to the next one; a block whose path is
    shorter gives the difference back on the edge where it leaves the longest one.
    """

    checkpoints: dict[int, int]
    """Block start -> the instructions paid there: the longest path to the next check."""
    ahead: dict[int, int]
    """Block start -> the instructions paid for past its end: what a run ending inside
    the block (a trap stub) gives back."""
    fall_refund: dict[int, int]
    """Block start -> what falling through to the next block gives back (if not 0)."""
    jump_refund: dict[int, int]
    """Block start -> what taking its final jump gives back (if not 0)."""
    longest: dict[int, int] = field(default_factory=dict)
    """Block start -> the longest path from its start to the next checkpoint: what a
    way into it that is not a checkpoint has paid ahead."""
    loop_ends: dict[int, int] = field(default_factory=dict)
    """Block start -> index of the block after it whose final ``ja`` jumps back to it."""
    loop_heads: set[int] = field(default_factory=set)
    """The targets of backward jumps: where loops begin."""


def meter_plan(blocks: list[Block], inlined: Mapping[int, int] | None = None) -> MeterPlan:
    """Checkpoints at the function's entry, at every target of a backward jump (each
    loop iteration passes one), after every local call (the callee spent budget of
    its own) but those written out in place (``inlined``: callee entry -> its
    length, paid for on the caller's path like its own instructions), and where a
    conditional backward jump falls through out of its loop (so the iterations, not
    the exit, take the short way).  Between checkpoints control only moves forward,
    so the longest path from each block is a sum over a DAG, found in one backward
    pass: whether a forward successor is a checkpoint is settled by the blocks after
    it, already seen.
    """
    checkpoints = {blocks[0][0]}
    longest: dict[int, int] = {}
    ahead_of: dict[int, int] = {}
    fall_refund: dict[int, int] = {}
    jump_refund: dict[int, int] = {}
    loop_ends: dict[int, int] = {}
    loop_heads: set[int] = set()
    after = None
    for index in range(len(blocks) - 1, -1, -1):
        start, block = blocks[index]
        last_pc, last = block[-1]
        spec = last.spec
        falling = jumping = None  # the paths ahead through each way out
        if after is not None and spec.op not in NO_FALL_THROUGH:
            in_place = 0
            if spec.op is _CALL_LOCAL:
                in_place = inlined.get(last_pc + 1 + last.imm, 0) if inlined else 0
                if not in_place:
                    checkpoints.add(after)
            falling = in_place + (0 if after in checkpoints else longest[after])
        if spec.is_jump:
            target = last_pc + 1 + (last.imm if spec.form is _JUMP_LONG else last.off)
            if target <= start:
                checkpoints.add(target)
                loop_heads.add(target)
                if spec.op is _JA:
                    loop_ends.setdefault(target, index)
                if falling:  # a loop's exit: checked there, so the back edge gives nothing
                    checkpoints.add(after)  # back (no block before this one has looked)
                    falling = 0
            jumping = 0 if target in checkpoints else longest[target]
        ahead = falling or 0
        if jumping is not None and jumping > ahead:
            ahead = jumping
        if falling is not None and falling != ahead:
            fall_refund[start] = ahead - falling
        if jumping is not None and jumping != ahead:
            jump_refund[start] = ahead - jumping
        longest[start] = len(block) + ahead
        ahead_of[start] = ahead
        after = start
    return MeterPlan(
        {start: longest[start] for start in checkpoints},
        ahead_of,
        fall_refund,
        jump_refund,
        longest,
        loop_ends,
        loop_heads,
    )


def access_kinds(program: Program) -> tuple[tuple[int, bool], ...]:
    """(size, write) of every kind of load, store and atomic the program has: the
    region-table counts native code keeps up to date when it moves a bound."""
    kinds = {
        (spec.size, spec.form is not Form.LOAD)
        for spec in program.specs
        if spec.form in (Form.LOAD, Form.STORE_IMM, Form.STORE_REG)
    }
    return tuple(sorted(kinds))


@dataclass(frozen=True)
class CalleeEffects:
    """What a function, with everything it calls, does that a native call must prepare."""

    writes: tuple[int, ...]
    """The registers among r6-r9 it may write: the caller's are saved and restored."""
    needs_frame_bottom: bool
    """It has checked memory accesses or helper calls, which read the stack's lowest
    address from the region table: the table must follow the call."""


def callee_effects(program: Program, frame_size: int) -> dict[int, CalleeEffects]:
    """:class:`CalleeEffects` of every function that some local call enters, by entry."""
    called = program.local_call_targets
    if not called:
        return {}
    call_targets = [
        target if insn.spec.op is _CALL_LOCAL else None
        for insn, target in zip(program.instructions, program.targets, strict=True)
    ]
    effects: dict[int, set[int]] = {}
    calls: dict[int, set[int]] = {}
    instructions, pcs = program.instructions, program.pcs
    first = {pc: index for index, pc in enumerate(pcs)}
    for entry, end in program.functions:
        if entry not in called:
            continue
        found: set[int] = set()
        callees: set[int] = set()
        effects[entry], calls[entry] = found, callees
        index = first[entry]
        while index < len(instructions) and pcs[index] < end:
            insn, target = instructions[index], call_targets[index]
            found.update(reg for reg in written_registers(insn) if 6 <= reg <= 9)
            if _reads_frame_bottom(insn, frame_size):
                found.add(_READS_BOTTOM)
            if target is not None:
                callees.add(target)
            index += 1
    changed = True
    while changed:  # close over calls (recursion included)
        changed = False
        for entry, callees in calls.items():
            before = len(effects[entry])
            for callee in callees:
                effects[entry] |= effects[callee]
            changed |= len(effects[entry]) != before
    return {
        entry: CalleeEffects(tuple(sorted(found - {_READS_BOTTOM})), _READS_BOTTOM in found)
        for entry, found in effects.items()
    }


_READS_BOTTOM = 11
"""Beside r6-r9 in :func:`callee_effects`' sets: the function reads the stack bound."""
_CHECKED_ACCESS_BASE: dict[Form, str] = {
    Form.LOAD: "src",
    Form.STORE_IMM: "dst",
    Form.STORE_REG: "dst",
}


def _reads_frame_bottom(insn: Instruction, frame_size: int) -> bool:
    spec = insn.spec
    if spec.op in (Op.CALL, Op.CALLX) or spec.op in ATOMIC_OPS:
        return True
    base = _CHECKED_ACCESS_BASE.get(spec.form)
    if base is None:
        return False
    return not in_current_frame(getattr(insn, base), insn.off, spec.size, frame_size)


def stack_footprint(program: Program, frame_size: int) -> tuple[int, int] | None:
    """Offsets from the main r10 of the stack bytes a run can touch; None: all of them.

    Without local calls only the main frame can be reached (accesses below it trap);
    of it, just the bytes that r10-based stores with constant offsets inside the frame
    touch, when those are the only way to write memory: no other store, atomic or
    helper call (any of them could write the stack through a computed address, even a
    constant one) and no other use of r10 (a stack pointer escaping).  Otherwise the
    whole main frame.
    """
    if program.local_call_targets:
        return None  # (a call to pc 0 recurses without adding a function)
    low, high = 0, 0
    kinds = _FOOTPRINT_KINDS
    for insn in program.instructions:
        kind = kinds[insn.spec]
        if kind is _REGISTERS:
            if insn.dst == 10 or insn.src == 10:
                return (-frame_size, 0)  # (unused register fields are 0)
            continue
        if kind is _WRITES:
            return (-frame_size, 0)
        base = insn.src if kind is _LOAD else insn.dst
        if base != 10:
            if kind is _LOAD:
                if insn.dst == 10:
                    return (-frame_size, 0)
                continue
            return (-frame_size, 0)  # a store through a computed address
        if kind is not _LOAD and insn.src == 10:
            return (-frame_size, 0)  # r10 stored: the stack pointer escapes
        size = insn.spec.size
        if not -frame_size <= insn.off <= -size:
            return None  # it traps at run time; zeroing cannot be limited safely
        if low == high:
            low, high = insn.off, insn.off + size
        else:
            low, high = min(low, insn.off), max(high, insn.off + size)
    return (low, high)


class _Footprint(Enum):
    """How an instruction bears on :func:`stack_footprint`."""

    REGISTERS = "reads or writes registers only: it matters if one is r10"
    WRITES = "may write memory at a computed address (stores other than below, atomics, calls)"
    LOAD = "a load: its base matters"
    STORE = "a plain store: its base matters, and its value if that is a register"


_REGISTERS, _WRITES, _LOAD, _STORE = _Footprint  # (plain names: enum attributes are slow)


def _footprint_kind(spec: InsnSpec) -> _Footprint:
    if spec.op in _WRITES_MEMORY:
        return _WRITES
    if spec.form is Form.LOAD:
        return _LOAD
    if spec.form in (Form.STORE_IMM, Form.STORE_REG):
        return _STORE
    return _REGISTERS


_WRITES_MEMORY = frozenset({Op.CALL, Op.CALLX, *ATOMIC_OPS})
_FOOTPRINT_KINDS = {spec: _footprint_kind(spec) for spec in INSTRUCTIONS}
