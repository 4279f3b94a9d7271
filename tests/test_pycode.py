"""The pycode tier against the interpreter where its code takes shortcuts.

Structured control flow (loops entered in the middle, jumps out of several loops,
improperly nested loops), the budget tested only at loop back edges, calls and
function entries, and masks left out where a value is provably in range: each
must give exactly the interpreter's r0, instruction count and, for budget traps,
the same faulting instruction, at every budget.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf import (
    VM,
    BpfError,
    CallDepthExceededError,
    ExecutionError,
    MemoryAccessError,
    Program,
    conformance_helpers,
    disassemble,
)
from pybpf.asm import assemble
from pybpf.isa import Op
from pybpf.isa.semantics import MASK64
from pybpf.tiers import available_tiers
from pybpf.verifier.counted import NEVER, TRIPS
from test_differential import EXAMPLES, programs

COMPILING_TIERS = [n for n, reason in available_tiers() if reason is None and n != "interp"]

SHAPES: dict[str, str] = {
    "jump-into-loop": """
        mov r0, 0
        mov r1, 5
        ja mid
    top:
        add r0, 1
    mid:
        add r0, 10
        sub r1, 1
        jne r1, 0, top
        exit
    """,
    "overlapping-loops": """
        mov r0, 0
        mov r1, 0
    a:
        add r0, 1
    b:
        add r1, 1
        jlt r1, 3, a
        add r0, 100
        jlt r1, 6, b
        exit
    """,
    "continue-outer-and-leave-two": """
        mov r0, 0
        mov r6, 0
    outer:
        add r6, 1
        jgt r6, 5, done
        mov r7, 0
    inner:
        add r7, 1
        add r0, r7
        jeq r7, 3, outer
        jgt r0, 40, done
        ja inner
    done:
        exit
    """,
    "three-levels": """
        mov r0, 0
        mov r6, 0
    l1:
        add r6, 1
        mov r7, 0
    l2:
        add r7, 1
        mov r8, 0
    l3:
        add r8, 1
        add r0, 1
        jeq r8, 2, l1_again
        jgt r0, 30, out
        jlt r8, 4, l3
        jlt r7, 3, l2
    l1_again:
        jlt r6, 4, l1
    out:
        exit
    """,
    "skip-a-whole-loop": """
        mov r0, 7
        jgt r1, 0, after
        mov r2, 3
    spin:
        add r0, 2
        sub r2, 1
        jne r2, 0, spin
    after:
        add r0, 1
        exit
    """,
    "backward-into-inner-loop": """
        mov r0, 0
        mov r6, 0
    outer:
        add r6, 1
        mov r7, 0
    inner:
        add r7, 1
        add r0, 3
        jlt r7, 2, inner
        jgt r6, 3, done
        jlt r0, 20, inner
        ja outer
    done:
        exit
    """,
    "calls-in-a-loop": """
        mov r6, 4
        mov r7, 0
    loop:
        mov r1, r6
        call local twice
        add r7, r0
        sub r6, 1
        jne r6, 0, loop
        mov r0, r7
        exit
    twice:
        mov r0, r1
        lsh r0, 1
        mov r2, 3
    spin:
        sub r2, 1
        jne r2, 0, spin
        exit
    """,
    "region-left-from-a-loop": """
        mov r0, 0
        jeq r1, 0, end
        mov r3, 4
    loop:
        add r0, 1
        jgt r0, 2, end
        sub r3, 1
        jne r3, 0, loop
        add r0, 100
    end:
        exit
    """,
    "nested-regions": """
        mov r0, 1
        jeq r1, 0, outer_end
        add r0, 2
        jne r2, 8, inner_end
        add r0, 4
    inner_end:
        add r0, 8
    outer_end:
        exit
    """,
    "bounded-counter": """
        mov r0, 0
        mov r3, 0
        ldxb r4, [r1]
    loop:
        jge r3, r4, out
        add r0, r3
        add r3, 1
        ja loop
    out:
        exit
    """,
    "inlined-leaf": """
        mov r6, 5
        mov r0, 3
        mov r7, 0
    loop:
        call local leaf
        add r7, r0
        add r7, r6
        sub r6, 1
        jne r6, 0, loop
        mov r0, r7
        exit
    leaf:
        mov r6, 100
        mov r9, r6
        add r0, r9
        mov r1, r0
        exit
    """,
    "ja-minus-one": """
        mov r0, 1
        ja -1
        exit
    """,
    "counted-down-to-zero": """
        mov r0, 0
        mov r4, 20
    loop:
        add r0, r4
        sub r4, 1
        jne r4, 0, loop
        exit
    """,
    "counted-up-tested-first": """
        mov r0, 0
        mov r3, 1
        mov r4, 23
    loop:
        jge r3, r4, out
        add r0, r3
        add r3, 3
        ja loop
    out:
        exit
    """,
    "counted-down-by-four-to-a-register": """
        mov r0, 0
        mov r6, 8
        mov r5, 48
    loop:
        jeq r5, r6, out
        add r0, r5
        sub r5, 4
        ja loop
    out:
        exit
    """,
    "counted-bound-in-the-immediate-at-the-left": """
        mov r0, 0
        mov r3, 0
        mov r4, 12
    loop:
        add r0, 7
        add r3, 1
        jgt r4, r3, loop
        exit
    """,
    "counter-carries-past-the-top": """
        mov r0, 0
        lddw r3, 0xfffffffffffffffc
        lddw r4, 0xffffffffffffffff
    loop:
        add r0, 1
        add r3, 2
        jlt r3, r4, loop
        exit
    """,
    "counter-reset-inside": """
        mov r0, 0
        mov r3, 0
        mov r6, 0
    loop:
        add r0, 1
        jne r6, 0, skip
        jne r3, 8, skip
        mov r3, 0
        mov r6, 1
    skip:
        add r3, 1
        jlt r3, 10, loop
        exit
    """,
    "bound-moves-inside": """
        mov r0, 0
        mov r3, 0
        mov r4, 6
    loop:
        add r0, 1
        add r4, 2
        add r3, 3
        jlt r3, r4, loop
        exit
    """,
    "counter-tested-on-odd-passes": """
        mov r0, 0
        mov r3, 0
    loop:
        add r3, 1
        add r0, 1
        jset r0, 1, test
        ja loop
    test:
        jge r3, 4, out
        ja loop
    out:
        exit
    """,
    "counted-loop-entered-in-the-middle": """
        mov r0, 0
        mov r4, 6
        ja mid
    loop:
        sub r4, 1
        add r0, 1
    mid:
        add r0, 1
        jne r4, 0, loop
        exit
    """,
    "counted-with-a-call-in-place": """
        mov r6, 9
        mov r7, 0
    loop:
        mov r1, r6
        call local leaf
        add r7, r0
        sub r6, 1
        jgt r6, 0, loop
        mov r0, r7
        exit
    leaf:
        mov r0, r1
        mul r0, 3
        add r0, 1
        exit
    """,
    "counted-with-two-ways-out": """
        mov r0, 0
        mov r6, 8
        mov r5, 48
    loop:
        jeq r5, r6, out
        mov r9, r5
        and r9, 3
        jeq r9, r2, out
        add r0, r5
        stxdw [r10-8], r0
        sub r5, 4
        ja loop
    out:
        exit
    """,
    "counted-with-a-packet-load": """
        mov r0, 0
        mov r3, 0
    loop:
        jge r3, 5, out
        ldindb r3, 4
        add r3, 1
        ja loop
    out:
        exit
    """,
    "counted-stepped-before-a-way-out": """
        mov r0, 0
        mov r3, 0
    loop:
        jge r3, 7, out
        add r3, 1
    tail:
        jeq r3, 3, out
        add r0, 2
        ja loop
    out:
        exit
    """,
    "input-walk-up": """
        mov r0, 0
        mov r3, r1
        mov r4, r2
        rsh r4, 1
        jeq r4, 0, done
    loop:
        ldxh r5, [r3]
        add r0, r5
        add r3, 2
        sub r4, 1
        jne r4, 0, loop
    done:
        exit
    """,
    "input-walk-past-the-end": """
        mov r0, 0
        mov r3, r1
        mov r4, 5
    loop:
        add r3, 2
        ldxh r5, [r3-2]
        add r0, r5
        sub r4, 1
        jne r4, 0, loop
        exit
    """,
    "input-walk-down-storing": """
        mov r3, r1
        add r3, 7
        mov r4, 8
    loop:
        stxb [r3], r4
        sub r3, 1
        sub r4, 1
        jne r4, 0, loop
        ldxdw r0, [r1]
        exit
    """,
    "input-walk-down-past-the-start": """
        mov r0, 0
        mov r3, r1
        add r3, 4
        mov r4, 5
    loop:
        sub r3, 1
        ldxb r5, [r3]
        add r0, r5
        sub r4, 1
        jne r4, 0, loop
        exit
    """,
    "input-walk-misaligned": """
        lddw r0, 0x0807060504030201
        stxdw [r1], r0
        mov r0, 0
        mov r3, r1
        add r3, 1
        mov r4, 3
    loop:
        ldxh r5, [r3]
        add r0, r5
        add r3, 2
        sub r4, 1
        jne r4, 0, loop
        exit
    """,
}

INPUT_WALKS = {
    "input-walk-up": "and 0 <= r3 - IB and r3 - IB + 2 * trips <= IL2 and not (r3 - IB) & 1",
    "input-walk-past-the-end": "and 0 <= r3 - IB and r3 - IB + 2 * trips <= IL2",
    "input-walk-down-storing": "and 0 <= r3 - IB + -1 * trips and r3 - IB <= IW1",
    "input-walk-misaligned": "and not (r3 - IB) & 1",
    "input-walk-down-past-the-start": "and 0 <= r3 + -1 - IB + -1 * trips and r3 + -1 - IB <= IL1",
}
"""Loops walking the input with a stepped pointer, and the bounds test before the loop
that stands for every pass's (the sweep runs them on an empty and an 8-byte input)."""

COUNTED = {
    "counted-down-to-zero": True,
    "counted-up-tested-first": True,
    "counted-down-by-four-to-a-register": True,
    "counted-bound-in-the-immediate-at-the-left": True,
    "counter-carries-past-the-top": True,
    "counter-reset-inside": False,
    "bound-moves-inside": False,
    "counter-tested-on-odd-passes": False,
    "counted-loop-entered-in-the-middle": False,
    "counted-with-a-call-in-place": True,
    "jump-into-loop": False,
    "counted-with-two-ways-out": True,
    "counted-with-a-packet-load": True,
    "counted-stepped-before-a-way-out": True,
}
PASSES_COUNTED_ON_THE_WAY_OUT = {
    "counted-up-tested-first": True,
    "counted-down-by-four-to-a-register": True,
    "counted-with-two-ways-out": True,
    "counted-with-a-packet-load": False,  # a packet load's miss counts on its own path
    "counted-stepped-before-a-way-out": False,  # a way out after the step
    "counted-with-a-call-in-place": False,  # its back edge is conditional
}
"""Counted loops of several blocks whose copy without budget tests also leaves out
the count per pass, adding the passes on each way out instead (``k0``)."""
"""Shapes and whether their loop is run without budget tests when the budget allows:
the budget sweep above then checks that choice at every budget."""


def outcome(program: Program, tier: str, budget: int, mem: bytes = b"") -> tuple[object, ...]:
    data = bytearray(mem)
    try:
        vm = VM(program, tier=tier, helpers=conformance_helpers(), budget=budget)
        result = vm.execute(data)
    except ExecutionError as error:
        return (type(error).__name__, error.pc, bytes(data))
    except BpfError as error:
        return (type(error).__name__, getattr(error, "pc", None))
    return ("ok", result.r0, result.instructions, bytes(data))


@pytest.mark.parametrize("tier", COMPILING_TIERS)
@pytest.mark.parametrize("name", SHAPES)
def test_shapes_match_at_every_budget(name: str, tier: str) -> None:
    program = assemble(SHAPES[name])
    for mem in (b"", bytes(8)):
        full = outcome(program, "interp", 10_000, mem)
        assert outcome(program, tier, 10_000, mem) == full, mem  # a counted loop's fast copy
        total = full[2] if full[0] == "ok" else 60
        assert isinstance(total, int)
        for budget in range(1, total + 3):
            expected = outcome(program, "interp", budget, mem)
            assert outcome(program, tier, budget, mem) == expected, (budget, mem)


def test_deep_loop_nests_are_flattened_and_still_exact() -> None:
    depth = 16
    lines = ["mov r0, 0"]
    for level in range(depth):
        lines += [f"mov r{level % 4 + 1}, 0", f"l{level}:"]
    lines.append("add r0, 1")
    for level in reversed(range(depth)):
        lines += [f"add r{level % 4 + 1}, 1", f"jlt r{level % 4 + 1}, 2, l{level}"]
    lines.append("exit")
    program = assemble("\n".join(lines))
    for budget in (1, 50, 333, 10_000):
        assert outcome(program, "pycode", budget) == outcome(program, "interp", budget)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    program=programs(),
    mem=st.binary(min_size=0, max_size=48),
    budget=st.integers(1, 400),
)
def test_exact_count_and_budget_trap(program: Program, mem: bytes, budget: int) -> None:
    expected = outcome(program, "interp", budget, mem)
    listing = disassemble(program)
    assert outcome(program, "pycode", budget, mem) == expected, f"{listing}\nmem={mem.hex()}"


def test_masks_are_left_out_where_ranges_allow() -> None:
    # r3 < r4 <= 255 inside the loop (r4 is a byte), so r3 + 1 cannot wrap; the sum in
    # r0 keeps growing as far as the analysis knows, so its addition may
    program = assemble(SHAPES["bounded-counter"])
    listing = VM(program, tier="pycode").listing()
    assert "r3 = r3 + 0x1\n" in listing
    assert "if r3 > " not in listing
    assert "if r0 > 0xffffffffffffffff: r0 -= 0x10000000000000000" in listing
    assert outcome(program, "pycode", 10_000, bytes([200])) == outcome(
        program, "interp", 10_000, bytes([200])
    )


def test_a_wrapped_address_faults_with_the_wrapped_value() -> None:
    program = assemble("lddw r2, 0xfffffffffffffff8\nldxb r0, [r2+16]\nexit")
    for tier in ("interp", "pycode"):
        with pytest.raises(MemoryAccessError) as info:
            VM(program, tier=tier).run()
        assert (info.value.pc, info.value.address, info.value.size) == (2, 8, 1)


@pytest.mark.parametrize("tier", ["interp", *COMPILING_TIERS])
def test_a_call_written_in_place_still_meets_the_depth_limit(tier: str) -> None:
    program = assemble(SHAPES["inlined-leaf"])
    assert "t6 = r6" in VM(program, tier="pycode").listing()
    with pytest.raises(CallDepthExceededError) as info:
        VM(program, tier=tier, max_call_depth=1).run()
    assert info.value.pc == 3


@pytest.mark.parametrize(("name", "counted"), COUNTED.items())
def test_counted_loops_are_recognised(name: str, counted: bool) -> None:
    listing = VM(assemble(SHAPES[name]), tier="pycode").listing()
    assert ("_passes_" in listing) is counted


@pytest.mark.parametrize(("name", "test"), INPUT_WALKS.items())
def test_input_walks_test_their_bounds_once_before_the_loop(name: str, test: str) -> None:
    listing = VM(assemble(SHAPES[name]), tier="pycode").listing()
    assert test in listing


@pytest.mark.parametrize(("name", "hoisted"), PASSES_COUNTED_ON_THE_WAY_OUT.items())
def test_passes_are_counted_on_the_way_out_of_uniform_loops(name: str, hoisted: bool) -> None:
    listing = VM(assemble(SHAPES[name]), tier="pycode").listing()
    assert ("k0 = r" in listing) is hoisted


_CONTINUES = {
    Op.JNE: lambda t, b: t != b,
    Op.JLT: lambda t, b: t < b,
    Op.JLE: lambda t, b: t <= b,
    Op.JGT: lambda t, b: t > b,
    Op.JGE: lambda t, b: t >= b,
}
_NEAR_EDGES = st.one_of(st.integers(0, 40), st.integers(MASK64 - 40, MASK64))
_PASS_LIMIT = 200


@settings(max_examples=EXAMPLES * 4, deadline=None)
@given(
    condition=st.sampled_from(sorted(TRIPS, key=lambda op: op.value)),
    first=_NEAR_EDGES,
    bound=_NEAR_EDGES,
    step=st.sampled_from([1, 2, 3, 4, 8, 16, -1, -2, -3, -4, -8, -16]),
)
def test_pass_counts_match_running_the_counter(
    condition: Op, first: int, bound: int, step: int
) -> None:
    if condition in (Op.JLT, Op.JLE) and step < 0 or condition in (Op.JGT, Op.JGE) and step > 0:
        return
    if condition is Op.JNE and abs(step) & (abs(step) - 1):
        return
    passes, value = 0, first
    while _CONTINUES[condition](value, bound) and passes < _PASS_LIMIT:
        passes += 1
        value = (value + step) & MASK64
    bounded = TRIPS[condition](first, bound, step)
    # never fewer than the passes the counter allows (a budget test could be missed),
    # and exact unless the counter may wrap, where it is "never" (every budget fails)
    assert bounded >= passes
    if bounded != NEVER and passes < _PASS_LIMIT:
        assert bounded == passes
