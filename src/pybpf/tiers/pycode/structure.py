"""The shape of one function's control flow, as the Python code will express it.

Every loop is an interval of blocks that some backward jump closes; intervals
that overlap without nesting are merged, so loops nest like Python loops.  A jump
that nesting alone cannot express sets a pending target ``b`` (a block's first
pc), and the blocks it may skip are *guarded*: they run only when ``b <= their
pc``.  A jump out of several loops at once breaks out level by level; the code
after each loop passes it on (a negative ``b`` continues an enclosing loop).

Also here: how far the meter may run between two budget tests, which loops a
counter bounds (:mod:`~pybpf.verifier.counted`), and the value ranges of the registers at each
block's entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pybpf.isa.table import CONDITIONAL_JUMP_OPS, Op
from pybpf.program import Block, Program
from pybpf.verifier import frames, ranges
from pybpf.verifier.counted import Counted, LoopShape, counted_loop

MAX_LOOP_NESTING = 12
"""Deeper loop nests are flattened into one loop (CPython allows 20 nested blocks)."""


@dataclass(eq=False)
class Loop:
    """Blocks ``first`` to ``last`` (indexes in the function), closed by backward jumps.

    The flags say what the code right after the loop must pass on to the
    enclosing loop: jumps that leave this loop and continue the parent
    (``continues_parent``), continue a loop further out (``breaks_parent``) or go
    forward past the parent's end (``leaves_parent``).
    """

    first: int
    last: int
    parent: Loop | None = None
    has_guards: bool = False
    continues_parent: bool = False
    breaks_parent: bool = False
    leaves_parent: bool = False

    def __contains__(self, index: int) -> bool:
        return self.first <= index <= self.last


def loop_spans(backward: list[tuple[int, int]], count: int) -> list[tuple[int, int]]:
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
    if depth > MAX_LOOP_NESTING:
        return [(0, count - 1)]
    return spans


@dataclass
class Function:
    """One function's blocks, loops and the facts the code generator needs about them."""

    entry: int
    blocks: list[Block]
    starts: list[int]
    end: int
    targets: list[int | None]
    """Index of the block each block's jump goes to, if it ends in a jump."""
    falls: list[bool]
    """Whether control may run off each block's end into the next one."""
    loops: list[Loop] = field(default_factory=list)
    innermost: list[Loop | None] = field(default_factory=list)
    loop_at: dict[int, Loop] = field(default_factory=dict)
    guarded: set[int] = field(default_factory=set)
    jumped_to: set[int] = field(default_factory=set)
    skips: dict[int, int] = field(default_factory=dict)
    """Conditional forward jumps written as ``if not condition:`` around the blocks
    they skip (source block to target block)."""
    reach: list[int] = field(default_factory=list)
    """Longest run of instructions from each block to the next budget test."""
    counted: dict[int, Counted] = field(default_factory=dict)
    """Loops (by first block) whose passes a counter bounds (:mod:`~pybpf.verifier.counted`)."""
    entry_ranges: list[ranges.State | None] = field(default_factory=list)
    """Register ranges as each block starts (None: the block is unreachable)."""
    uses_memory: bool = False
    uses_packet: bool = False
    calls_out: bool = False
    """Whether the function calls helpers or other functions (which may touch buffers)."""
    sets_frame: bool = False
    """Whether the stack bound must follow this function's frame (memory, calls)."""

    def pc_of(self, index: int) -> int:
        return self.starts[index] if index < len(self.starts) else self.end

    def route(self, source: int, target: int) -> tuple[Loop | None, list[Loop]]:
        """The innermost loop holding both blocks, and the loops the jump leaves first."""
        broken: list[Loop] = []
        loop = self.innermost[source]
        while loop is not None and target not in loop:
            broken.append(loop)
            loop = loop.parent
        return loop, broken

    def merges_into_next(self, index: int, last: int) -> bool:
        """Whether block ``index + 1`` is only ever entered by running off ``index``."""
        following = index + 1
        return (
            following <= last
            and self.falls[index]
            and following not in self.loop_at
            and following not in self.guarded
            and following not in self.jumped_to
        )


def analyse(
    program: Program,
    entry: int,
    end: int,
    entry_state: ranges.State,
    inlined: dict[int, int],
) -> Function:
    """Blocks, loops, guards, meter reach and register ranges of one function.

    ``inlined`` maps the entries of functions written out at their call sites to
    their lengths.
    """
    blocks = program.basic_blocks(entry, end)
    starts = [start for start, _ in blocks]
    targets, falls = program.block_edges(blocks)
    function = Function(entry, blocks, starts, end, targets, falls)
    function.jumped_to = {t for t in targets if t is not None}
    backward = [(i, t) for i, t in enumerate(targets) if t is not None and t <= i]
    function.innermost = [None] * len(blocks)
    open_loops: list[Loop] = []
    for first, last in sorted(
        loop_spans(backward, len(blocks)), key=lambda span: (span[0], -span[1])
    ):
        while open_loops and open_loops[-1].last < first:
            open_loops.pop()
        loop = Loop(first, last, open_loops[-1] if open_loops else None)
        open_loops.append(loop)
        function.loops.append(loop)
        function.loop_at[first] = loop
        for i in range(first, last + 1):
            function.innermost[i] = loop  # inner loops come later and overwrite
    function.skips = _skips(function)
    _mark_jumps(function)
    function.reach = _reach(function, program, inlined)
    function.counted = _counted_loops(function, program, inlined)
    function.entry_ranges = frames.block_ranges(
        program, blocks, entry_state, _loop_writes(function, backward)
    )
    return function


def _counted_loops(
    function: Function, program: Program, inlined: dict[int, int]
) -> dict[int, Counted]:
    """The loops :func:`~pybpf.verifier.counted.counted_loop` bounds, among those it may look at:
    innermost, entered only at their first block, calling nothing not written out."""
    found: dict[int, Counted] = {}
    entered = {
        (source, target) for source, target in enumerate(function.targets) if target is not None
    }
    for loop in function.loops:
        inside = range(loop.first, loop.last + 1)
        if any(other is not loop and other.first in inside for other in function.loops):
            continue
        if any(t in inside and t != loop.first and s not in inside for s, t in entered):
            continue
        lengths: list[int] = []
        written: list[int] = []
        calls = False
        for i in inside:
            _start, body = function.blocks[i]
            length = len(body)
            for pc, insn in body:
                op = insn.spec.op
                if op in (Op.CALL, Op.CALLX):
                    calls = True
                elif op is Op.CALL_LOCAL:
                    callee = program.target_of(pc, insn)
                    calls |= callee not in inlined
                    length += inlined.get(callee, 0) if callee is not None else 0
                written += ranges.written(insn)
            lengths.append(length)
        if calls:
            continue
        shape = LoopShape(
            loop.first,
            loop.last,
            [[insn for _pc, insn in function.blocks[i][1]] for i in inside],
            function.targets[loop.first : loop.last + 1],
            function.falls[loop.first : loop.last + 1],
            lengths,
        )
        counted = counted_loop(shape, written)
        if counted is not None:
            found[loop.first] = counted
    return found


def _loop_writes(function: Function, backward: list[tuple[int, int]]) -> dict[int, frozenset[int]]:
    """Each backward-jump target, with the registers written inside its loop."""
    writes: dict[int, frozenset[int]] = {}
    for _source, target in backward:
        loop = function.innermost[target]
        if loop is None:
            raise AssertionError("a backward jump outside every loop")  # spans cover it
        registers: set[int] = set()
        for i in range(loop.first, loop.last + 1):
            for _pc, insn in function.blocks[i][1]:
                registers |= ranges.written(insn)
        writes[target] = frozenset(registers)
    return writes


def _skips(function: Function) -> dict[int, int]:
    """Conditional forward jumps over a region of blocks entered only from the jump.

    Such a jump needs no pending target: the region becomes the body of an
    ``if``.  Every loop that starts inside the region must end inside it, and no
    jump from outside may land inside it, so regions nest like Python blocks.
    """
    sources: dict[int, list[int]] = {}
    for source, target in enumerate(function.targets):
        if target is not None:
            sources.setdefault(target, []).append(source)
    skips: dict[int, int] = {}
    for source, target in enumerate(function.targets):
        _start, body = function.blocks[source]
        if (
            target is None
            or target <= source + 1
            or body[-1][1].spec.op not in CONDITIONAL_JUMP_OPS
            or function.route(source, target)[1]
        ):
            continue
        inside = range(source + 1, target)
        if all(loop.last < target for loop in function.loops if loop.first in inside) and all(
            source < jumper < target for k in inside for jumper in sources.get(k, ())
        ):
            skips[source] = target
    return skips


def _mark_jumps(function: Function) -> None:
    """Find the blocks a pending target may skip, and what each loop passes on."""
    for source, target in enumerate(function.targets):
        if target is None or source in function.skips:
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


def _reach(function: Function, program: Program, inlined: dict[int, int]) -> list[int]:
    """For each block, the most instructions a forward path from it runs before a test.

    A call ends the stretch (the callee tests on entry, the caller after the
    return), unless the callee is written out in place: then its instructions
    belong to the stretch.
    """
    reach = [0] * len(function.blocks)
    for i in range(len(function.blocks) - 1, -1, -1):
        _start, body = function.blocks[i]
        pc, final = body[-1]
        onward = 0
        callee = program.target_of(pc, final) if final.spec.op is Op.CALL_LOCAL else None
        if callee in inlined:
            onward = inlined[callee] + reach[i + 1]
        elif final.spec.op is not Op.CALL_LOCAL:
            if function.falls[i] and i + 1 < len(reach):
                onward = reach[i + 1]
            target = function.targets[i]
            if target is not None and target > i:
                onward = max(onward, reach[target])
        reach[i] = len(body) + onward
    return reach
