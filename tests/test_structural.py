"""Load-time structural checks: what every program must satisfy before it runs."""

from __future__ import annotations

import pytest

from pybpf import VM, Program, VerifierError
from pybpf.asm import assemble
from pybpf.verifier import check_structure


@pytest.mark.parametrize(
    ("source", "pc"),
    [
        ("mov r10, 1\nexit", 0),
        ("add r10, 8\nexit", 0),
        ("ldxdw r10, [r1]\nexit", 0),
        ("lddw r10, 1\nexit", 0),
        ("lock fetch add [r1], r10\nexit", 0),
        ("ja +5\nexit", 0),
        ("jeq r1, 0, -3\nexit", 0),
        ("mov r0, 0", 0),  # falls off the end
        ("mov r0, 0\njeq r0, 0, -1", 1),  # a conditional jump may fall through
        ("call local +4\nexit", 0),
        ("mov r0, 1\ncall local f\nexit\nf:\nmov r0, 2", 3),  # function runs off the end
        ("call local f\nja f\nf:\nmov r0, 2\nexit", 1),  # jumps do not cross functions
        ("call local f\nexit\nf:\nja -2", 2),
    ],
)
def test_unsafe_structure_is_refused_with_the_index(source: str, pc: int) -> None:
    with pytest.raises(VerifierError) as info:
        check_structure(assemble(source))
    assert info.value.pc == pc


def test_jump_into_the_middle_of_lddw_is_refused() -> None:
    program = assemble("ja +1\nlddw r0, 5\nexit")
    with pytest.raises(VerifierError) as info:
        check_structure(program)
    assert info.value.pc == 0


def test_empty_program_is_refused() -> None:
    with pytest.raises(VerifierError):
        VM(Program(()))


def test_well_formed_programs_pass() -> None:
    check_structure(assemble("mov r0, 0\nja +1\nmov r0, 1\nexit"))
    check_structure(assemble("call local f\nexit\nf:\nmov r0, 3\nja +0\nexit"))
    check_structure(assemble("loop:\nja loop"))  # terminates only by budget, but well formed
