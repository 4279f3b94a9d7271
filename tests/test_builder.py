"""ProgramBuilder: generated methods, operand dispatch, labels, and errors."""

from __future__ import annotations

import pytest

from pybpf.asm import (
    R0,
    R1,
    R2,
    R10,
    ProgramBuilder,
    Reg,
    assemble,
    method_name,
)
from pybpf.errors import AssemblerError
from pybpf.isa.table import BY_MNEMONIC


def test_loop_example_matches_assembly() -> None:
    b = ProgramBuilder()
    b.mov64(R0, 0)
    b.label("loop")
    b.add64(R0, 1)
    b.jlt(R0, 10, "loop")
    b.exit()
    expected = assemble("mov64 r0, 0\nloop: add64 r0, 1\njlt r0, 10, loop\nexit")
    assert b.build() == expected


def test_chaining() -> None:
    program = ProgramBuilder().mov(R0, 1).label("end").exit().build("chained")
    assert program == assemble("mov r0, 1\nexit")
    assert program.name == "chained"


def test_register_or_immediate_picks_the_row() -> None:
    program = ProgramBuilder().add64(R1, R2).add64(R1, 2).jeq(R1, R2, +1).jeq(R1, 2, -1).build()
    assert program == assemble("add64 r1, r2\nadd64 r1, 2\njeq r1, r2, +1\njeq r1, 2, -1")


def test_memory_operands_follow_assembly_order() -> None:
    program = (
        ProgramBuilder()
        .ldxw(R0, R1, 4)
        .ldxdw(R0, R1)
        .stxdw(R10, -8, R0)
        .stw(R1, 2, 5)
        .lock_fetch_add(R10, -8, R1)
        .build()
    )
    text = "ldxw r0, [r1+4]\nldxdw r0, [r1]\nstxdw [r10-8], r0\nstw [r1+2], 5\n"
    assert program == assemble(text + "lock fetch add [r10-8], r1")


def test_calls_and_pseudo_loads() -> None:
    program = (
        ProgramBuilder()
        .call(1)
        .call(R2)
        .call("local", "fn")
        .lddw(R1, 0x123456789ABCDEF0)
        .lddw(R1, "map_by_fd", 3)
        .lddw(R1, "map_val_by_fd", 3 | 8 << 32)
        .exit()
        .label("fn")
        .exit()
        .build()
    )
    text = (
        "call 1\ncallx r2\ncall local fn\nlddw r1, 0x123456789abcdef0\n"
        "lddw r1, map_by_fd(3)\nlddw r1, map_val_by_fd(3, 8)\nexit\nfn: exit"
    )
    assert program == assemble(text)


def test_keyword_and_alias_names() -> None:
    program = ProgramBuilder().and_(R1, 1).or_(R1, R2).swap16(R0).gotol(+0).build()
    assert program == assemble("and r1, 1\nor r1, r2\nbswap16 r0\nja32 +0")


def test_implicit_exit_label() -> None:
    program = ProgramBuilder().jeq(R1, 0, "exit").mov(R0, 1).exit().build()
    assert program.instructions[0].off == 1


def test_pc_counts_slots() -> None:
    b = ProgramBuilder().lddw(R0, 1)
    assert b.pc == 2


def test_emit_appends_an_instruction() -> None:
    insn = assemble("mov r0, 7").instructions[0]
    assert ProgramBuilder().emit(insn).exit().build() == assemble("mov r0, 7\nexit")


def test_every_mnemonic_is_a_documented_method() -> None:
    for mnemonic in BY_MNEMONIC:
        method = getattr(ProgramBuilder, method_name(mnemonic))
        assert method.__name__ == method_name(mnemonic)
        assert method.__doc__ and mnemonic.split()[0] in method.__doc__
    assert method_name("lock fetch add") == "lock_fetch_add"
    assert method_name("and") == "and_"


def test_registers() -> None:
    assert [int(reg) for reg in Reg] == list(range(11))
    assert R10 is Reg.R10


@pytest.mark.parametrize(
    "call",
    [
        lambda b: b.mov64(0, 1),  # a plain int is never a register
        lambda b: b.mov64(R0),
        lambda b: b.exit(R0),
        lambda b: b.jeq(R0, 1, 2.5),
        lambda b: b.lddw(R1, "map_by_name", 3),
        lambda b: b.call("func"),
    ],
)
def test_no_matching_form_is_a_type_error(call: object) -> None:
    with pytest.raises(TypeError):
        call(ProgramBuilder())  # type: ignore[operator]


def test_value_errors_name_instruction_and_argument() -> None:
    b = ProgramBuilder().mov(R0, 0)
    with pytest.raises(AssemblerError) as info:
        b.ldxw(R0, R1, 40000)
    assert (info.value.line, info.value.column) == (2, 3)
    with pytest.raises(AssemblerError) as info:
        b.add(R1, 2**32)
    assert (info.value.line, info.value.column) == (2, 2)


def test_label_errors() -> None:
    with pytest.raises(AssemblerError) as info:
        ProgramBuilder().exit().ja("nowhere").build()
    assert (info.value.line, info.value.column) == (2, 1)
    with pytest.raises(AssemblerError):
        ProgramBuilder().label("x").exit().label("x")
    b = ProgramBuilder().ja("far")
    for _ in range(33_000):
        b.mov(R0, 0)
    with pytest.raises(AssemblerError) as info:
        b.label("far").exit().build()
    assert info.value.line == 1
