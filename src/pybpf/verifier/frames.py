"""Register ranges at each block of a function, and the accesses they prove inside
the current stack frame, so tiers may leave out those accesses' region checks.

The proofs hold for the stack :meth:`~pybpf.runtime.machine.Machine.create` lays
out: ``max_call_depth`` frames of ``stack_size`` bytes ending at
:func:`stack_top`, the main function's frame on top (r10 is read-only and each
call moves it down one frame).  A tier that relies on them runs a machine whose
stack differs some other way.  Also here: the functions that never see their frame
at all, simple enough to write out at each call site (:func:`inline_length`).
"""

from __future__ import annotations

from pybpf.isa.table import CONDITIONAL_JUMP_OPS, Op
from pybpf.program import Block, Program
from pybpf.runtime.machine import MachineConfig
from pybpf.runtime.memory import STACK_BASE
from pybpf.verifier import ranges


def stack_top(config: MachineConfig) -> int:
    """The VM address just past the stack region, the main function's r10."""
    return STACK_BASE + config.stack_size * config.max_call_depth


def frame_tops(program: Program, config: MachineConfig) -> tuple[ranges.Range, ranges.Range]:
    """r10's range on entry to the main function and to every other function: the
    top, and anywhere from one frame below it to the deepest frame a call reaches
    (the main function's too if something calls it)."""
    top = stack_top(config)
    size = config.stack_size
    deepest = top - size * max(1, config.max_call_depth - 1)
    callee = (min(deepest, top - size), top - size)
    calls_main = any(spec.op is Op.CALL_LOCAL for spec in program.specs) and any(
        program.target_of(pc, insn) == 0 for pc, insn in program if insn.spec.op is Op.CALL_LOCAL
    )
    return ((callee[0], top) if calls_main else (top, top)), callee


def block_ranges(
    program: Program,
    blocks: list[Block],
    entry: ranges.State,
    headers: dict[int, frozenset[int]] | None = None,
) -> list[ranges.State | None]:
    """The register facts as each block starts (None: no run reaches it).

    ``headers`` are the blocks where growing bounds are widened, with the registers
    to widen first; by default each backward jump's target, with the registers
    written between it and the jump.
    """
    targets, falls = program.block_edges(blocks)
    if headers is None:
        headers = _loop_writes(blocks, targets)

    def through(index: int, state: ranges.State) -> ranges.State:
        for _pc, insn in blocks[index][1]:
            if insn.spec.op not in CONDITIONAL_JUMP_OPS:
                ranges.step(insn, state)
        return state

    def successors(index: int, state: ranges.State) -> list[tuple[int, ranges.State]]:
        final = blocks[index][1][-1][1]
        target = targets[index]
        following = index + 1
        count = len(blocks)
        result: list[tuple[int, ranges.State]] = []
        if final.spec.op in CONDITIONAL_JUMP_OPS and target is not None:
            for successor, taken in ((target, True), (following, False)):
                narrowed = ranges.narrow(final, state, taken)
                if narrowed is not None and successor < count:
                    result.append((successor, narrowed))
            return result
        if target is not None:
            result.append((target, state))
        if falls[index] and following < count:
            result.append((following, state))
        return result

    return ranges.fixpoint(len(blocks), entry, through, successors, headers)


def _loop_writes(blocks: list[Block], targets: list[int | None]) -> dict[int, frozenset[int]]:
    """Each backward jump's target, with the registers written from it to the jump."""
    ends: dict[int, int] = {}
    for source, target in enumerate(targets):
        if target is not None and target <= source:
            ends[target] = max(ends.get(target, source), source)
    return {
        first: frozenset(
            register
            for _start, body in blocks[first : last + 1]
            for _pc, insn in body
            for register in ranges.written(insn)
        )
        for first, last in ends.items()
    }


def in_frame(state: ranges.State, base: int, off: int, size: int, frame_size: int) -> bool:
    """Whether the ranges place ``[base + off, + size)`` inside the current frame:
    r10 is one known value and the whole access lies in the frame below it."""
    frame_low, frame_top = state[10]
    low, high = state[base]
    return (
        frame_low == frame_top
        and low + off >= frame_top - frame_size
        and high + off + size <= frame_top
    )


def frame_accesses(
    program: Program, blocks: list[Block], entry: ranges.State, frame_size: int
) -> dict[int, int]:
    """The loads, stores and atomics of a function through a register other than r10
    that the ranges place inside the current frame: ``pc -> r10's value there``."""
    proven: dict[int, int] = {}
    for (_start, body), state in zip(blocks, block_ranges(program, blocks, entry), strict=True):
        if state is None:
            continue  # no run gets here
        state = list(state)
        for pc, insn in body:
            if insn.spec.op in ranges.ACCESS_OPS:
                base = ranges.access_base(insn)
                if base != 10 and in_frame(state, base, insn.off, insn.spec.size, frame_size):
                    proven[pc] = state[10][0]
            if insn.spec.op not in CONDITIONAL_JUMP_OPS:
                ranges.step(insn, state)
    return proven


def inline_length(program: Program, entry: int, end: int) -> int | None:
    """The length of a function simple enough to be written out at each call site.

    That is one block of arithmetic ending in ``exit``: nothing in it can fault,
    call, test the budget or see its frame (it does not name r10), so the caller
    can run it in place, counting its instructions with its own.
    """
    blocks = program.basic_blocks(entry, end)
    if len(blocks) != 1:
        return None
    _start, body = blocks[0]
    if body[-1][1].spec.op is not Op.EXIT:
        return None
    for _pc, insn in body[:-1]:
        if insn.spec.op not in ranges.ARITHMETIC_OPS or 10 in (insn.dst, insn.src):
            return None
    return len(body)
