"""x86-64 counted loops: a loop of one block that a counter bounds gets a guard that
tests its passes against the budget, and its walks through memory against the
region table, once; then a copy without the meter or the per-access checks runs.

The copy must be invisible: the same r0, memory, instruction count, error and
faulting instruction as the interpreter at every budget, whichever copy runs.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf import VM, MemoryAccessError, Program
from pybpf.asm import assemble, disassemble
from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import MASK64
from pybpf.isa.table import Form
from pybpf.runtime.machine import MachineConfig
from pybpf.tiers import available_tiers, get_tier
from test_differential import (
    ADD64,
    ALU_ROWS,
    EDGE_VALUES,
    EXAMPLES,
    LOAD_ROWS,
    MOV64,
    STORE_ROWS,
    immediates,
)
from test_pycode import outcome

pytestmark = pytest.mark.skipif(
    "x86_64" not in [name for name, reason in available_tiers() if reason is None],
    reason="x86-64 tier unavailable here",
)


def copies(program: Program) -> dict[int, int]:
    """Code offset -> loop pc of each counted loop's copy without the meter."""
    compiled = get_tier("x86_64").compile(program, MachineConfig())
    return compiled.native.counted_copies  # type: ignore[attr-defined, no-any-return]


CONDITIONS = ("jne", "jlt", "jle", "jgt", "jge")
INTERESTING = (0, 1, 2, 3, 5, 8, 64, 255, 1 << 31, 1 << 63, MASK64 - 7, MASK64 - 2, MASK64)


def counter_loop(start: int, bound: int, step: int, condition: str, in_register: bool) -> str:
    """A one-block loop stepping r3 from ``start`` by ``step`` while ``r3 OP bound``,
    reading the input byte r6 walks over (r6 steps by 1) and summing it into r0."""
    test = f"{condition} r3, r4, loop" if in_register else f"{condition} r3, {bound}, loop"
    return f"""
        lddw r3, {start}
        lddw r4, {bound}
        mov r0, 0
        mov r6, r1
    loop:
        ldxb r5, [r6+0]
        add r0, r5
        add r6, 1
        add r3, {step}
        {test}
        exit
    """


def assert_same_everywhere(program: Program, mem: bytes, budgets: list[int]) -> None:
    for budget in budgets:
        expected = outcome(program, "interp", budget, mem)
        assert outcome(program, "x86_64", budget, mem) == expected, (budget, mem.hex())


def budgets_around(program: Program, mem: bytes) -> list[int]:
    """A large budget, and every budget near the exact count of a run that ends."""
    full = outcome(program, "interp", 4000, mem)
    if full[0] != "ok":
        return [1, 7, 4000]
    total = full[2]
    assert isinstance(total, int)
    return sorted({4000, 1, *range(max(1, total - 6), total + 3)})


IMMEDIATES = (0, 1, 2, 3, 5, 8, 64, 255, -1, -3, -8, (1 << 31) - 1, -(1 << 31))
"""Bounds an immediate can hold (sign-extended to 64 bits for the compare)."""


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from(INTERESTING) | st.integers(0, 40),
    bound=st.sampled_from(INTERESTING) | st.integers(0, 40),
    imm=st.sampled_from(IMMEDIATES) | st.integers(0, 40),
    step=st.sampled_from((1, 2, 4, 8, -1, -2, -4, 3, -3)),
    condition=st.sampled_from(CONDITIONS),
    in_register=st.booleans(),
    length=st.integers(0, 48),
)
def test_counted_loops_match_the_interpreter_at_every_budget(
    start: int, bound: int, imm: int, step: int, condition: str, in_register: bool, length: int
) -> None:
    program = assemble(
        counter_loop(start, bound if in_register else imm, step, condition, in_register)
    )
    mem = bytes(range(1, length + 1))
    assert_same_everywhere(program, mem, budgets_around(program, mem))


def test_the_generated_loops_get_copies() -> None:
    # the property above exercises the copies only if they are made
    for condition in CONDITIONS:
        for in_register in (False, True):
            down = condition in ("jgt", "jge")
            start, bound, step = (8, 1, -1) if down else (0, 8, 1)
            program = assemble(counter_loop(start, bound, step, condition, in_register))
            assert copies(program), (condition, in_register)
    assert not copies(assemble(counter_loop(0, 8, 3, "jlt", True)))  # not a power of two


@pytest.mark.parametrize(
    ("start", "bound", "step", "condition"),
    [
        (MASK64 - 7, MASK64, 4, "jlt"),  # MASK64 - 3 < MASK64, then 0 after the carry
        (MASK64 - 7, MASK64 - 1, 4, "jle"),
        (7, 2, -4, "jgt"),  # 3 > 2, then 2**64 - 1 after the borrow
        (7, 3, -4, "jge"),
        (1, 4, 2, "jne"),  # odd: never 4
        (MASK64 - 1, 1, 4, "jne"),
    ],
)
@pytest.mark.parametrize("in_register", [True, False])
def test_counters_that_step_over_their_bound_run_until_the_budget_ends(
    start: int, bound: int, step: int, condition: str, in_register: bool
) -> None:
    imm = bound if bound < 1 << 31 else bound - (1 << 64)
    program = assemble(
        counter_loop(start, bound if in_register else imm, step, condition, in_register)
    )
    assert_same_everywhere(program, bytes(range(64)), [1, 9, 50, 333, 4000])


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("magnitude", [2, 4])
def test_passes_are_exact_for_every_small_start_and_bound(condition: str, magnitude: int) -> None:
    # rounding: a step that does not divide the distance to the bound
    step = -magnitude if condition in ("jgt", "jge") else magnitude
    for in_register in (False, True):
        for start in range(12):
            for bound in range(12):
                program = assemble(counter_loop(start, bound, step, condition, in_register))
                mem = bytes(range(16))
                for budget in (4000, 12):
                    expected = outcome(program, "interp", budget, mem)
                    assert outcome(program, "x86_64", budget, mem) == expected, (start, bound)


@pytest.mark.parametrize(
    ("setup", "step"),
    [
        ("sub r6, 2", 1),  # starts below the input, walks up into it
        ("add r6, 20", -1),  # starts past the end (16 bytes), walks down into it
        ("add r6, 13", 1),  # starts inside, walks out of the end
        ("add r6, 2", -1),  # starts inside, walks out of the start
    ],
)
def test_walks_with_either_end_outside_fault_as_the_interpreter_does(setup: str, step: int) -> None:
    program = assemble(f"""
        mov r0, 0
        mov r3, 6
        mov r6, r1
        {setup}
    loop:
        ldxb r5, [r6+0]
        add r0, r5
        add r6, {step}
        sub r3, 1
        jne r3, 0, loop
        exit
    """)
    assert copies(program)
    mem = bytes(range(1, 17))
    assert outcome(program, "interp", 4000, mem)[0] == "MemoryAccessError"
    assert_same_everywhere(program, mem, budgets_around(program, mem))


PASSES_LOOP = """
        lddw r3, {start}
        lddw r4, {bound}
        mov r0, 0
        stxdw [r10-8], r0
    loop:
        {leave} r3, r4, counted_out
        {prep}
        ldxdw r5, [{base}-8]
        add r5, 1
        {call}
        stxdw [r10-8], r5
        {early_step}
        jeq r5, {stop}, {stop_target}
    step:
        {late_step}
        ja loop
    counted_out:
        ldxdw r0, [r10-8]
        exit
    stopped:
        mov r0, 1000
        exit
"""
"""A loop of three blocks: leave when ``r3 LEAVE r4`` (the counter test), then when
a running sum read back from the stack reaches ``stop``, then step r3 and ``ja``
back; each way out leaves its own mark in r0.  The other fields make variants that
do not qualify for a copy (see :data:`QUALIFIED`)."""
QUALIFIED = {"base": "r10", "call": "", "early_step": "", "stop_target": "stopped", "prep": ""}
"""The fields of :data:`PASSES_LOOP` for a loop that gets a copy."""


def passes_loop(start: int, bound: int, step: int, leave: str, stop: int) -> str:
    return PASSES_LOOP.format(
        **QUALIFIED, start=start, bound=bound, leave=leave, stop=stop, late_step=f"add r3, {step}"
    )


LEAVING = ("jeq", "jge", "jgt", "jle", "jlt")
"""The counter tests that leave the loop (their negations let a pass go on)."""


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    start=st.sampled_from(INTERESTING) | st.integers(0, 40),
    bound=st.sampled_from(INTERESTING) | st.integers(0, 40),
    step=st.sampled_from((1, 2, 4, -1, -2, -4, 3)),
    leave=st.sampled_from(LEAVING),
    stop=st.integers(1, 30),
)
def test_loops_of_several_blocks_match_the_interpreter_at_every_budget(
    start: int, bound: int, step: int, leave: str, stop: int
) -> None:
    program = assemble(passes_loop(start, bound, step, leave, stop))
    assert_same_everywhere(program, b"", budgets_around(program, b""))


def test_loops_of_several_blocks_get_copies() -> None:
    for leave in LEAVING:
        down = leave in ("jle", "jlt")
        start, bound, step = (9, 1, -1) if down else (0, 9, 1)
        program = assemble(passes_loop(start, bound, step, leave, 5))
        assert list(copies(program).values()) == [6], leave
        for stop in (3, 20):  # each way out first
            program = assemble(passes_loop(start, bound, step, leave, stop))
            assert_same_everywhere(program, b"", budgets_around(program, b""))
    sort = assemble(open_benchmark("sort"))
    assert sorted(copies(sort).values()) == [8, 22, 33]  # the copy in, the shift, the sum


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"stop_target": "step"},  # a jump inside the loop: passes may differ
        {"early_step": "add r3, 1", "late_step": ""},  # a way out after the step
        {"base": "r7", "prep": "mov r7, r1\nand r7, -1"},  # a checked access, not a walk
        {"call": "call 5"},  # a helper call
    ],
)
def test_loops_of_several_blocks_that_do_not_qualify_keep_the_meter(change: dict[str, str]) -> None:
    fields = QUALIFIED | {
        "start": 0,
        "bound": 9,
        "leave": "jge",
        "stop": 5,
        "late_step": "add r3, 1",
    }
    program = assemble(PASSES_LOOP.format(**(fields | change)))
    assert bool(copies(program)) == (not change), change
    mem = bytes(16)
    assert_same_everywhere(program, mem, budgets_around(program, mem))


def test_the_checksum_loop_gets_a_copy_and_every_budget_agrees() -> None:
    program = assemble(open_benchmark("checksum"))
    assert list(copies(program).values()) == [5]
    for mem in (b"", b"\x01", bytes(range(7)), bytes(range(64))):
        assert_same_everywhere(program, mem, budgets_around(program, mem))


def test_a_walk_that_leaves_its_region_faults_where_the_interpreter_does() -> None:
    # 6 passes of a 2-byte read walking up from the input's start: a 9-byte input
    # faults on the fifth (offset 8 needs bytes 8 and 9); the guard sends it to the
    # checked loop, which names that pass's load
    program = assemble("""
        mov r0, 0
        mov r3, 6
        mov r6, r1
    loop:
        ldxh r5, [r6+0]
        add r0, r5
        add r6, 2
        sub r3, 1
        jne r3, 0, loop
        exit
    """)
    assert copies(program)
    data = bytearray(9)
    with pytest.raises(MemoryAccessError) as error:
        VM(program, tier="x86_64").execute(data)
    assert error.value.pc == 3
    for length in range(0, 16):
        mem = bytes(range(length))
        assert_same_everywhere(program, mem, budgets_around(program, mem))


@pytest.mark.parametrize(
    ("step", "step_first", "copied"),
    [
        ("sub r6, -2147483648", False, False),  # a step of +2**31
        ("sub r6, -2147483648", True, False),
        ("add r6, 2147483647", False, True),
        ("add r6, 2147483647", True, False),  # the first address: 32767 + 2**31 - 1
        ("add r6, -2147483648", False, True),
        ("add r6, -2147483648", True, True),
    ],
)
def test_walks_with_steps_and_offsets_beyond_32_bits_compile(
    step: str, step_first: bool, copied: bool
) -> None:
    # a walk whose step, or first offset, does not fit the guard's 32-bit immediates
    # keeps its checks (the loop as it is); nothing fails to compile
    before, after = (step, "") if step_first else ("", step)
    program = assemble(f"""
        mov r0, 0
        mov r3, 3
        mov r6, r1
    loop:
        {before}
        ldxb r5, [r6+32767]
        add r0, r5
        {after}
        sub r3, 1
        jne r3, 0, loop
        exit
    """)
    assert bool(copies(program)) == copied
    mem = bytes(range(40))
    assert_same_everywhere(program, mem, budgets_around(program, mem))


SUM_WALK = """
        mov r0, 0
        mov r3, {start}
        mov r6, r1
        add r6, 1
    loop:
        {leave} r3, {end}, out
        mov r7, r6
        add r7, r3
        ldxb r5, [r7{off:+d}]
        add r0, r5
        add r3, {step}
        ja loop
    out:
        exit
"""
"""A loop of two blocks reading ``[(r1 + 1) + r3 + off]`` for r3 from ``start`` to
``end`` (up or down): a walk with two bases, tested after the counter's test."""


@pytest.mark.parametrize("start", [0, 3, 9])
@pytest.mark.parametrize("off", [-1, 0, 2])
@pytest.mark.parametrize("step", [1, -1])
def test_a_walk_of_two_bases_is_tested_at_both_ends(start: int, off: int, step: int) -> None:
    leave = "jge" if step > 0 else "jle"
    for end in range(start, start + 12) if step > 0 else range(start, -1, -1):
        program = assemble(SUM_WALK.format(start=start, end=end, off=off, step=step, leave=leave))
        assert copies(program)
        for length in range(0, 16):  # the last read at 1 + (end - 1) + off
            mem = bytes(range(1, length + 1))
            assert_same_everywhere(program, mem, budgets_around(program, mem))


TESTED_LATE = """
        mov r0, 0
        mov r3, 0
        mov r6, r1
    loop:
        ldxb r5, [r6+0]
        add r0, r5
        jeq r5, 0, out
        jge r3, {end}, out
        ldxb r5, [r6+1]
        add r0, r5
        add r6, 1
        add r3, 1
        ja loop
    out:
        exit
"""
"""A loop of three blocks whose counter test comes after a read (that read runs in
one pass more than the one after the test)."""


def test_reads_before_and_after_a_counter_test_in_the_middle() -> None:
    for end in range(0, 10):
        program = assemble(TESTED_LATE.format(end=end))
        assert copies(program)
        for length in range(0, 14):
            mem = bytes(range(1, length + 1))
            assert_same_everywhere(program, mem, budgets_around(program, mem))


def test_stores_through_a_walk_reach_the_callers_buffer() -> None:
    program = assemble("""
        mov r3, 0
        mov r6, r1
        add r6, 14
    loop:
        stxh [r6+0], r3
        sub r6, 2
        add r3, 1
        jlt r3, 8, loop
        mov r0, r3
        exit
    """)
    assert copies(program)
    native, reference = bytearray(16), bytearray(16)
    assert VM(program, tier="x86_64").execute(native).r0 == 8
    VM(program, tier="interp").execute(reference)
    assert native == reference == bytes(b for n in range(7, -1, -1) for b in (n, 0))
    with pytest.raises(MemoryAccessError) as error:
        VM(program, tier="x86_64").run(bytes(16), mem_writable=False)
    assert error.value.pc == 3  # read-only input: the guard fails, the checked loop traps


def test_batches_run_the_copy_per_record() -> None:
    program = assemble(open_benchmark("checksum"))
    records = [bytes(range(n)) for n in range(0, 40, 3)]
    expected = [VM(program, tier="interp").run(record) for record in records]
    assert list(VM(program, tier="x86_64").run_batch(records)) == expected


@pytest.mark.parametrize(
    ("name", "body"),
    [
        ("a helper call", "call 5"),
        ("a division by a register", "div r0, r3"),
        ("a shift by a register", "lsh r0, r3"),
        ("an atomic add", "stxdw [r10-8], r0\nlock add [r10-8], r3"),
        ("r10 as a value", "mov r7, r10"),
        (
            "a load through a pointer it computes otherwise",
            "mov r7, r1\nand r7, -2\nldxb r5, [r7+0]",
        ),
        ("a load from r10 outside the frame", "ldxb r5, [r10-700]"),
    ],
)
def test_loops_whose_code_could_trap_call_or_use_rcx_keep_the_meter(name: str, body: str) -> None:
    program = assemble(f"""
        mov r0, 0
        mov r3, 4
    loop:
        {body}
        add r0, 1
        sub r3, 1
        jne r3, 0, loop
        exit
    """)
    assert copies(program) == {}, name
    assert_same_everywhere(program, bytes(8), [1, 5, 9, 40, 4000])


STACK_WALK = """
        ldxdw r7, [r1+0]
        mov r8, r10
        sub r8, r7
        mov r3, 4
    loop:
        {input_access}
        stxb [r8-1], r3
        sub r8, 1
        sub r3, 1
        jne r3, 0, loop
        mov r0, r3
        exit
"""
"""A loop storing down the stack from a place the value ranges cannot bound (it comes
from the input), with or without a walk over the input as well."""


def test_a_walk_of_the_stack_is_checked_against_the_stacks_row() -> None:
    program = assemble(STACK_WALK.format(input_access=""))
    assert copies(program)
    for r7 in (0, 1, 16, 508, 509, 512, 1 << 40):
        mem = r7.to_bytes(8, "little")
        assert_same_everywhere(program, mem, budgets_around(program, mem))


def test_walks_of_two_regions_keep_the_checks() -> None:
    # rcx holds the host offset of one region only
    source = STACK_WALK.format(input_access="ldxb r5, [r6+0]\nadd r6, 1").replace(
        "mov r3, 4", "mov r3, 4\nmov r6, r1"
    )
    program = assemble(source)
    assert copies(program) == {}
    for r7 in (16, 1 << 40):
        mem = r7.to_bytes(8, "little")
        assert_same_everywhere(program, mem, [1, 10, 40, 4000])


def test_listing_names_the_copy() -> None:
    listing = VM(assemble(open_benchmark("checksum")), tier="x86_64").listing()
    assert "; the loop at 5, counted" in listing
    assert "word ptr [r8 + rcx]" in listing  # the walk's load, its check hoisted


def open_benchmark(name: str) -> str:
    from pathlib import Path

    return (Path(__file__).parent.parent / "benchmarks" / "programs" / f"{name}.s").read_text()


# -- counted loops with generated bodies ---------------------------------------------

COUNTER, BOUND, WALKER = 3, 4, 6
"""The loop's counter, its bound and the pointer it steps through the input."""
BODY_REGS = st.sampled_from([0, 2, 5, 7, 8, 9])
"""Registers the generated bodies write (not the counter, the bound or the walker)."""


@st.composite
def body_instructions(draw: st.DrawFn) -> list[Instruction]:
    """An ALU row (some of which keep the loop as it is: divisions, shifts by a
    register, r10 as a value), or a load or store in the frame or through r10 outside
    it, through the walker, through the input pointer, or through a sum of two of
    the counter, the walker and the input pointer made just before it."""
    kind = draw(st.sampled_from(["alu"] * 4 + ["frame", "frame", "walk", "walk", "input", "sum"]))
    if kind == "alu":
        spec = draw(st.sampled_from(ALU_ROWS))
        imm = draw(immediates) if spec.form is Form.ALU_IMM else 0
        src = draw(st.integers(0, 10))
        return [Instruction.make(spec, dst=draw(BODY_REGS), src=src, imm=imm)]
    prefix: list[Instruction] = []
    if kind == "sum":
        first, second = draw(st.permutations([1, COUNTER, WALKER]))[:2]
        prefix = [Instruction.make(MOV64, dst=ADDRESS, src=first)]
        prefix.append(Instruction.make(ADD64, dst=ADDRESS, src=second))
    base, off = {
        "frame": (10, draw(st.integers(-64, -1) | st.integers(-700, 16))),
        "walk": (WALKER, draw(st.integers(-3, 6) | st.sampled_from((-(1 << 15), (1 << 15) - 1)))),
        "input": (1, draw(st.integers(0, 12))),
        "sum": (ADDRESS, draw(st.integers(-4, 8))),
    }[kind]
    if draw(st.booleans()):
        spec = draw(st.sampled_from(LOAD_ROWS))
        return [*prefix, Instruction.make(spec, dst=draw(BODY_REGS), src=base, off=off)]
    spec = draw(st.sampled_from(STORE_ROWS))
    value = draw(BODY_REGS)
    return [*prefix, Instruction.make(spec, dst=base, src=value, off=off, imm=draw(immediates))]


ADDRESS = 7
"""The register the generated bodies compute sums of two pointers in (one of BODY_REGS)."""


WALK_STEPS = ("add r6, 1", "add r6, 2", "add r6, 4", "add r6, -1", "sub r6, 2", "")
WALK_STEPS += ("add r6, 2147483647", "add r6, -2147483648", "sub r6, -2147483648")
"""How the loop steps the walker (none, or by the 32-bit immediate's extremes too)."""


@st.composite
def counted_programs(draw: st.DrawFn) -> Program:
    """Registers set from edge values, then a loop of one block (the counter test
    last) or of several (the counter test among the body's instructions, then a
    data test, the steps and ``ja``) whose body is generated; r6 walks the input
    from a drawn offset."""
    step = draw(st.sampled_from((1, 2, 4, -1, -2, -4)))
    up = step > 0
    start = draw(st.integers(0, 12))
    passes = draw(st.integers(0, 9))
    bound = start + step * passes
    lines = [f"lddw r{reg}, {draw(st.sampled_from(EDGE_VALUES))}" for reg in (0, 5, 7, 8, 9)]
    lines += [f"lddw r{COUNTER}, {start & MASK64}", f"lddw r{BOUND}, {bound & MASK64}"]
    lines += [f"mov r{WALKER}, r1", f"add r{WALKER}, {draw(st.integers(-2, 8))}"]
    walk_step = draw(st.sampled_from(WALK_STEPS))
    body = [insn for part in draw(st.lists(body_instructions(), max_size=6)) for insn in part]
    text = [disassemble(Program((insn,))).strip() for insn in body]
    steps = [f"add r{COUNTER}, {step}"] + ([walk_step] if walk_step else [])
    draw(st.randoms()).shuffle(steps)
    if draw(st.booleans()):  # one block: the walker and counter steps anywhere in it
        where = draw(st.integers(0, len(text)))
        text[where:where] = steps
        going_on = "jlt" if up else "jgt"
        going_on = draw(st.sampled_from(["jne", going_on]))
        lines += ["loop:", *text, f"{going_on} r{COUNTER}, r{BOUND}, loop", "exit"]
    else:
        leave = "jge" if up else "jle"
        leave = draw(st.sampled_from(["jeq", leave]))
        data_exit = f"jeq r{draw(BODY_REGS)}, {draw(st.integers(0, 3))}, out"
        split = draw(st.integers(0, len(text)))  # the counter test first, or after some
        test = f"{leave} r{COUNTER}, r{BOUND}, out"
        lines += ["loop:", *text[:split], test, *text[split:], data_exit, *steps]
        lines += ["ja loop", "out:", "exit"]
    return assemble("\n".join(lines))


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=counted_programs(), mem=st.binary(min_size=0, max_size=24))
def test_generated_counted_loops_match_the_interpreter(program: Program, mem: bytes) -> None:
    listing = disassemble(program)
    for budget in budgets_around(program, mem):
        expected = outcome(program, "interp", budget, mem)
        got = outcome(program, "x86_64", budget, mem)
        assert got == expected, f"{listing}\nmem={mem.hex()} budget={budget}"
