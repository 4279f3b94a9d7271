"""Program analyses the x86-64 compiler needs: where the meter is checked, what a
callee does that its call must prepare, and which stack bytes a batch record can touch.

They read the decoded program only; the compiler turns their answers into code.
"""

from __future__ import annotations

from dataclasses import dataclass

from pybpf.isa.instruction import Instruction, written_registers
from pybpf.isa.table import FORM_FIELDS, Form, Op
from pybpf.program import Block, Program
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
NO_FALL_THROUGH = frozenset({Op.JA, Op.EXIT})
"""Operations after which control never reaches the next instruction."""


@dataclass(frozen=True)
class MeterPlan:
    """Where a function's meter is checked, and what each path is paid ahead."""

    checkpoints: dict[int, int]
    """Block start -> the instructions paid there: the longest path to the next check."""
    longest: dict[int, int]
    """Block start -> the longest path from its start to the next check (inclusive)."""


def meter_plan(program: Program, blocks: list[Block]) -> MeterPlan:
    """Checkpoints at the function's entry, at every target of a backward jump (each
    loop iteration passes one) and after every local call (the callee spent budget of
    its own).  Between checkpoints control only moves forward, so the longest path
    from each block is a sum over a DAG, found in one backward pass.
    """
    checkpoints = {blocks[0][0]}
    successors: list[list[int]] = []
    for index, (start, block) in enumerate(blocks):
        last_pc, last = block[-1]
        op = last.spec.op
        after = blocks[index + 1][0] if index + 1 < len(blocks) else None
        following = []
        if after is not None and op not in NO_FALL_THROUGH:
            following.append(after)
            if op is Op.CALL_LOCAL:
                checkpoints.add(after)
        if last.spec.is_jump:
            target = program.target_of(last_pc, last)
            assert target is not None
            following.append(target)
            if target <= start:
                checkpoints.add(target)
        successors.append(following)
    longest: dict[int, int] = {}
    for index in reversed(range(len(blocks))):
        start, block = blocks[index]
        ahead = [longest[t] for t in successors[index] if t > start and t not in checkpoints]
        longest[start] = len(block) + max(ahead, default=0)
    return MeterPlan({start: longest[start] for start in checkpoints}, longest)


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
        target if insn.spec.op is Op.CALL_LOCAL else None
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
    touched: tuple[int, int] | None = None
    for insn in program.instructions:
        form = insn.spec.form
        if insn.dst != 10 and insn.src != 10:
            if form in _STORE_FORMS or insn.spec.op in _WRITES_MEMORY:
                return (-frame_size, 0)
            continue  # unused register fields are 0, so r10 is not involved
        if (form is Form.LOAD and insn.src == 10) or (form in _STORE_FORMS and insn.dst == 10):
            if not in_current_frame(10, insn.off, insn.spec.size, frame_size):
                return None  # it traps at run time; zeroing cannot be limited safely
            low, high = insn.off, insn.off + insn.spec.size
            if touched is not None:
                low, high = min(low, touched[0]), max(high, touched[1])
            touched = (low, high)
            continue
        if any(getattr(insn, name) == 10 for name in _REGISTER_FIELDS[form]):
            return (-frame_size, 0)
    return touched or (0, 0)


_STORE_FORMS = (Form.STORE_IMM, Form.STORE_REG)
_WRITES_MEMORY = frozenset({Op.CALL, Op.CALLX, *ATOMIC_OPS})
_REGISTER_FIELDS: dict[Form, tuple[str, ...]] = {
    form: tuple(name for name in ("dst", "src") if name in FORM_FIELDS[form]) for form in Form
}
