"""Accesses the value ranges prove inside the current stack frame, and the tiers that
leave out those accesses' region checks.

The data files under ``tests/data/ranges`` run such programs (including pointers
that walk out of the frame) on every tier against the interpreter; these pin which
accesses the proof covers, and that compiled code relying on it still refuses a
machine whose stack is not where the proof put it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pybpf import VM, ExecutionError, MemoryAccessError
from pybpf.asm import assemble
from pybpf.program import Program
from pybpf.runtime.helpers import HelperRegistry
from pybpf.runtime.machine import Machine, MachineConfig
from pybpf.runtime.memory import STACK_BASE, AddressSpace, MemoryRegion
from pybpf.tiers import available_tiers, get_tier
from pybpf.verifier import frames, ranges
from test_differential import EXAMPLES

NATIVE = pytest.mark.skipif(
    "x86_64" not in [name for name, reason in available_tiers() if reason is None],
    reason="x86-64 tier unavailable here",
)

# r6 = the frame's lowest 64 bytes; a loop fills them through r5 = r6 + i, reads
# them back through a pointer counting down from r10, then reads one slot that
# r2 (the input length, unknown) may move anywhere
WALKS = """
    mov r6, r10
    sub r6, 64
    mov r3, 0
fill:
    jge r3, 64, filled
    mov r5, r6
    add r5, r3
    stxdw [r5], r3
    add r3, 8
    ja fill
filled:
    mov r5, r10
    sub r5, 512
    mov r0, 0
    mov r4, r10
read:
    jle r4, r5, done
    ldxb r7, [r4-1]
    add r0, r7
    sub r4, 1
    ja read
done:
    mov r5, r6
    add r5, r2
    ldxdw r7, [r5]
    add r0, r7
    exit
"""


def _proven(source: str, config: MachineConfig | None = None) -> dict[int, int]:
    program = assemble(source)
    config = config or MachineConfig()
    main_r10, callee_r10 = frames.frame_tops(program, config)
    proven: dict[int, int] = {}
    for entry, end in program.functions:
        r10 = main_r10 if entry == 0 else callee_r10
        proven |= frames.frame_accesses(
            program,
            program.basic_blocks(entry, end),
            ranges.entry_state(r10),
            config.stack_size,
        )
    return proven


def _pc_of(program: Program, text: str) -> int:
    from pybpf import disassemble

    for pc, insn in program:
        if disassemble(Program((insn,))).strip().endswith(text):
            return pc
    raise AssertionError(f"no instruction {text!r}")


def test_bounded_pointers_into_the_frame_are_proven_and_an_unbounded_one_is_not() -> None:
    program = assemble(WALKS)
    proven = _proven(WALKS)
    top = frames.stack_top(MachineConfig())
    store = _pc_of(program, "stxdw [r5+0], r3")
    byte = _pc_of(program, "ldxb r7, [r4-1]")
    last = _pc_of(program, "ldxdw r7, [r5+0]")
    assert proven == {store: top, byte: top}
    assert last not in proven


def test_the_frame_bounds_are_exact() -> None:
    lowest = "mov r5, r10\nsub r5, 512\nldxb r0, [r5]\nexit"
    below = "mov r5, r10\nsub r5, 513\nldxb r0, [r5]\nexit"
    word_at_top = "mov r5, r10\nsub r5, 8\nldxdw r0, [r5]\nexit"
    past_top = "mov r5, r10\nsub r5, 7\nldxdw r0, [r5]\nexit"
    assert list(_proven(lowest)) == [2]
    assert list(_proven(word_at_top)) == [2]
    assert _proven(below) == {}
    assert _proven(past_top) == {}


def test_a_callee_at_more_than_one_depth_proves_nothing() -> None:
    source = """
        call local f
        exit
    f:
        mov r5, r10
        sub r5, 8
        stxdw [r5], r1
        exit
    """
    assert _proven(source, MachineConfig(max_call_depth=2)) != {}  # one depth: r10 is known
    assert _proven(source, MachineConfig(max_call_depth=8)) == {}


def test_an_analysis_cut_short_knows_nothing_anywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ranges, "_MAX_STEPS_PER_BLOCK", 0)
    program = assemble(WALKS)
    blocks = program.basic_blocks(*program.functions[0])
    states = frames.block_ranges(program, blocks, ranges.entry_state((1 << 20, 1 << 20)))
    assert states == [ranges.unknown_state()] * len(blocks)
    assert _proven(WALKS) == {}


def test_r10_accesses_alone_need_no_proof() -> None:
    assert _proven("stxdw [r10-8], r1\nldxdw r0, [r10-8]\nexit") == {}


@pytest.mark.parametrize("tier", ["pycode", "x86_64"])
def test_proven_accesses_agree_with_the_interpreter(tier: str) -> None:
    if tier == "x86_64" and "x86_64" not in [n for n, r in available_tiers() if r is None]:
        pytest.skip("x86-64 tier unavailable here")
    program = assemble(WALKS)
    for length in (0, 8, 56, 57, 64, 448, 449, 1 << 20):
        data = bytearray(length if length < 4096 else 8)
        outcomes = []
        for name in ("interp", tier):
            vm = VM(program, tier=name)
            machine = vm.make_machine(data)
            machine.regs[2] = length
            try:
                outcomes.append(("ok", get_tier(name).compile(program, vm.config).run(machine)))
            except MemoryAccessError as error:
                outcomes.append(("fault", error.pc))
        assert outcomes[0] == outcomes[1], length


@NATIVE
def test_native_code_counts_its_proven_accesses() -> None:
    vm = VM(assemble(WALKS), tier="x86_64")
    listing = vm.listing()
    assert "rbp + r10 - 0x10001000" in listing  # r5 indexes the frame, no check
    compiled = get_tier("x86_64").compile(assemble(WALKS), vm.config)
    assert compiled.native.frame_proofs == 2  # type: ignore[attr-defined]


def _machine_with_the_stack_moved_up(config: MachineConfig, by: int) -> Machine:
    stack = MemoryRegion("stack", STACK_BASE + by, bytearray(config.stack_size * 8), owned=True)
    stack.vm_start = stack.vm_end - config.stack_size
    space = AddressSpace([stack])
    machine = Machine(config=config, memory=space, stack=stack, helpers=HelperRegistry())
    machine.regs[10] = stack.vm_end
    machine.regs[2] = 8
    return machine


@NATIVE
def test_native_code_with_proofs_refuses_a_stack_elsewhere() -> None:
    """A machine whose stack ends somewhere else runs on the interpreter instead (the
    proven accesses would otherwise land 4 KiB past the frame)."""
    program = assemble(WALKS)
    config = MachineConfig()
    machine = _machine_with_the_stack_moved_up(config, 4096)
    twin = _machine_with_the_stack_moved_up(config, 4096)
    result = get_tier("x86_64").compile(program, config).run(machine)
    assert result == get_tier("interp").compile(program, config).run(twin)
    assert bytes(machine.stack.buffer) == bytes(twin.stack.buffer)


# -- generated walks over the frame ------------------------------------------------

WALK_ACCESSES = {
    "load": "ldx{w} r7, [r5{off:+d}]\n    add r0, r7",
    "store": "stx{w} [r5{off:+d}], r3",
    "store-imm": "st{w} [r5{off:+d}], 7",
    "atomic": "lock add{w64} [r5{off:+d}], r3",
}
WIDTHS = {"b": 1, "h": 2, "w": 4, "dw": 8}


@st.composite
def frame_walks(draw: st.DrawFn) -> str:
    """A loop stepping a pointer from somewhere near the frame by a counter, with an
    access at an offset from it inside the loop and one after it: most land in the
    frame, some straddle its ends (then every tier faults at the same instruction)."""
    below = draw(st.one_of(st.integers(120, 500), st.integers(-8, 600)))
    start, bound = draw(st.integers(0, 64)), draw(st.integers(0, 96))
    step = draw(st.sampled_from([1, 2, 4, 8, 3]))
    test = draw(st.sampled_from(["jge r3, {b}, done", "jgt r3, {b}, done", "jeq r3, {b}, done"]))
    lines = ["mov r0, 0", "mov r6, r10", f"sub r6, {below}", "mov r5, r6"]
    lines += [f"mov r3, {start}", "loop:"]
    lines.append("    " + test.format(b=bound))
    lines += ["    mov r5, r6", "    add r5, r3"]
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(sorted(WALK_ACCESSES)))
        width = draw(st.sampled_from(sorted(WIDTHS) if kind != "atomic" else ["w", "dw"]))
        off = draw(st.integers(-16, 16))
        w64 = "32" if width == "w" else "64"
        lines.append("    " + WALK_ACCESSES[kind].format(w=width, off=off, w64=w64))
    lines += [f"    add r3, {step}", "    ja loop", "done:"]
    lines.append(WALK_ACCESSES["load"].format(w="dw", off=draw(st.integers(-16, 8))))
    lines += [f"ldxdw r7, [r10{slot:+d}]\nadd r0, r7" for slot in (-8, -256, -512)]
    lines.append("exit")
    return "\n".join(lines)


def _walk_outcome(program: Program, tier: str) -> tuple[object, ...]:
    try:
        return ("ok", VM(program, tier=tier, budget=5000).run())
    except ExecutionError as error:
        return (type(error).__name__, error.pc)


COMPILING_TIERS = [
    name for name, reason in available_tiers() if reason is None and name != "interp"
]


@pytest.mark.parametrize("tier", COMPILING_TIERS)
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(source=frame_walks())
def test_frame_walks_match_the_interpreter(tier: str, source: str) -> None:
    program = assemble(source)
    assert _walk_outcome(program, tier) == _walk_outcome(program, "interp"), source


def test_pycode_reaches_a_proven_aligned_word_with_one_subscript() -> None:
    listing = VM(assemble(WALKS), tier="pycode").listing()
    assert "s8[r5 - SB >> 3] = r3" in listing  # the fill loop's store: no test, no temporary
    assert "r7 = sb[r4 - SBn1]" in listing  # the byte read counting down (SBn1 = SB + 1)


@pytest.mark.parametrize("tier", COMPILING_TIERS)
def test_proven_accesses_agree_in_batches(tier: str) -> None:
    """The record loop enters each record with rbp at the frame's top, as one run
    does; r2 (the record's length) picks the slot the last load reads."""
    program = assemble(WALKS)
    records = [bytes(length) for length in (0, 8, 56, 16, 0, 48)]
    expected = [VM(program, tier="interp").run(bytearray(record)) for record in records]
    assert list(VM(program, tier=tier).run_batch(records)) == expected
