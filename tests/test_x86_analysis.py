"""The x86-64 compiler's program analyses, checked on their own (no native code runs).

The meter data files pin exact instruction counts on every tier; these pin where the
plan puts its checks and refunds, which decides what a loop iteration costs.
"""

from __future__ import annotations

from pybpf.asm import assemble
from pybpf.tiers.x86_64.analysis import MeterPlan, meter_plan

ROTATED_LOOP = """
    mov r0, 0
    jeq r1, 0, done
loop:
    add r0, r1
    sub r1, 1
    jne r1, 0, loop
    add r0, 7
    add r0, 8
done:
    exit
"""

CALL_THEN_ADD = """
    call local f
    add r0, 1
    exit
f:
    mov r0, 2
    exit
"""


def _plan(source: str) -> MeterPlan:
    program = assemble(source)
    return meter_plan(program.basic_blocks(*program.functions[0]))


def test_a_loop_back_edge_gives_nothing_back_and_its_exit_is_checked() -> None:
    plan = _plan(ROTATED_LOOP)
    loop, exit_block = 2, 5
    assert plan.checkpoints[loop] == 3  # one iteration: add, sub, jne
    assert loop not in plan.jump_refund  # the back edge is the short way, for free
    assert plan.checkpoints[exit_block] == 3  # the way out pays for itself, once
    assert plan.fall_refund.get(loop) is None


def test_forward_paths_pay_the_longest_and_shorter_ones_give_back() -> None:
    plan = _plan(
        """
        jeq r1, 0, short
        add r0, 1
        add r0, 2
    short:
        exit
        """
    )
    assert plan.checkpoints == {0: 4}  # jeq, add, add, exit
    assert plan.jump_refund == {0: 2}  # taking the jump skips the two adds
    assert plan.ahead[0] == 3
    assert plan.fall_refund == {}


def test_calls_are_followed_by_a_checkpoint() -> None:
    plan = _plan(CALL_THEN_ADD)
    assert plan.checkpoints == {0: 1, 1: 2}


def test_a_call_written_in_place_is_paid_with_the_callers_path() -> None:
    program = assemble(CALL_THEN_ADD)
    blocks = program.basic_blocks(*program.functions[0])
    plan = meter_plan(blocks, {3: 2})  # f starts at pc 3 and is two instructions long
    assert plan.checkpoints == {0: 5}  # call, f's mov and exit, add, exit
    assert plan.ahead[0] == 4


def test_a_zero_test_right_after_an_alu_result_reads_its_flags() -> None:
    """``jeq r1, 0`` right after ``add r1, 1`` needs no ``test``; testing another
    register, or a 64-bit test of a 32-bit result, keeps it (``test r64, r64``: 3 bytes)."""
    from pybpf.runtime.machine import MachineConfig
    from pybpf.tiers.x86_64.compiler import compile_program

    def size(source: str) -> int:
        return len(compile_program(assemble(source), MachineConfig()).code)

    reused = size("add r1, 1\njeq r1, 0, +0\nexit")
    assert size("add r1, 1\njeq r2, 0, +0\nexit") == reused + 3
    assert size("add32 r1, 1\njeq r1, 0, +0\nexit") == reused + 3 - 1  # add32 has no REX.W
