"""Assembler: byte-exact encodings (worked out by hand from RFC 9669), both dialects, errors."""

from __future__ import annotations

import pytest

from pybpf.asm import assemble
from pybpf.errors import AssemblerError


def encoding(text: str) -> str:
    """The assembled bytes as spaced hex, one slot per group of eight."""
    data = assemble(text).to_bytes()
    return " | ".join(data[i : i + 8].hex(" ") for i in range(0, len(data), 8))


# Each expected encoding is opcode, dst|src<<4, off (LE16), imm (LE32), per RFC 9669 §3.
RBPF_SYNTAX = [
    ("add64 r1, 0x605", "07 01 00 00 05 06 00 00"),
    ("add32 r1, r2", "0c 21 00 00 00 00 00 00"),
    ("mov r0, 1", "b7 00 00 00 01 00 00 00"),
    ("mov32 r0, -1", "b4 00 00 00 ff ff ff ff"),
    ("mov32 r0, 0xffffffff", "b4 00 00 00 ff ff ff ff"),
    ("sub64 r3, -0x10", "17 03 00 00 f0 ff ff ff"),
    ("ldxh r0, [r1+2]", "69 10 02 00 00 00 00 00"),
    ("ldxdw r0, [r1]", "79 10 00 00 00 00 00 00"),
    ("ldxb r9, [r10 - 1]", "71 a9 ff ff 00 00 00 00"),
    ("stxdw [r10-8], r0", "7b 0a f8 ff 00 00 00 00"),
    ("stw [r1+2], 5", "62 01 02 00 05 00 00 00"),
    ("stdw [r1 + 0x10], -1", "7a 01 10 00 ff ff ff ff"),
    ("be16 r0", "dc 00 00 00 10 00 00 00"),
    ("le32 r0", "d4 00 00 00 20 00 00 00"),
    ("be64 r5", "dc 05 00 00 40 00 00 00"),
    ("neg64 r2", "87 02 00 00 00 00 00 00"),
    ("neg32 r2", "84 02 00 00 00 00 00 00"),
    ("ja +2", "05 00 02 00 00 00 00 00"),
    ("ja -1", "05 00 ff ff 00 00 00 00"),
    ("jeq r1, 3, +1", "15 01 01 00 03 00 00 00"),
    ("jeq32 r1, r2, -3", "1e 21 fd ff 00 00 00 00"),
    ("jne r1, r2, +0", "5d 21 00 00 00 00 00 00"),
    ("jslt r1, -1, +4", "c5 01 04 00 ff ff ff ff"),
    ("lddw r0, 0x123456789abcdef0", "18 00 00 00 f0 de bc 9a | 00 00 00 00 78 56 34 12"),
    ("lddw r3, -1", "18 03 00 00 ff ff ff ff | 00 00 00 00 ff ff ff ff"),
    ("call 1", "85 00 00 00 01 00 00 00"),
    ("exit", "95 00 00 00 00 00 00 00"),
    ("ldabsw 0x10", "20 00 00 00 10 00 00 00"),
    ("ldabsh 2", "28 00 00 00 02 00 00 00"),
    ("ldindb r1, 4", "50 10 00 00 04 00 00 00"),
]

CONFORMANCE_SYNTAX = [
    ("mov %r0, 1", "b7 00 00 00 01 00 00 00"),
    ("add %r1, %r2", "0f 21 00 00 00 00 00 00"),
    ("div %r1, 3", "37 01 00 00 03 00 00 00"),
    ("sdiv %r1, %r2", "3f 21 01 00 00 00 00 00"),
    ("smod %r1, 3", "97 01 01 00 03 00 00 00"),
    ("sdiv32 %r1, -2", "34 01 01 00 fe ff ff ff"),
    ("neg %r3", "87 03 00 00 00 00 00 00"),
    ("mov32 %r0, %r1", "bc 10 00 00 00 00 00 00"),
    ("lock add [%r10-8], %r1", "db 1a f8 ff 00 00 00 00"),
    ("lock fetch add [%r10-8], %r1", "db 1a f8 ff 01 00 00 00"),
    ("lock add32 [%r10-4], %r1", "c3 1a fc ff 00 00 00 00"),
    ("lock fetch or32 [%r1+0], %r2", "c3 21 00 00 41 00 00 00"),
    ("lock and [%r1], %r2", "db 21 00 00 50 00 00 00"),
    ("lock fetch xor64 [%r1], %r2", "db 21 00 00 a1 00 00 00"),
    ("lock xchg [%r10-8], %r1", "db 1a f8 ff e1 00 00 00"),
    ("lock cmpxchg32 [%r10-4], %r1", "c3 1a fc ff f1 00 00 00"),
    ("call %r2", "8d 02 00 00 00 00 00 00"),
    ("callx r2", "8d 02 00 00 00 00 00 00"),
    ("ldxsb %r0, [%r1+0]", "91 10 00 00 00 00 00 00"),
    ("ldxsh %r0, [%r1+2]", "89 10 02 00 00 00 00 00"),
    ("ldxsw %r0, [%r1-4]", "81 10 fc ff 00 00 00 00"),
    ("movsx864 %r1, %r2", "bf 21 08 00 00 00 00 00"),
    ("movsx1664 %r1, %r2", "bf 21 10 00 00 00 00 00"),
    ("movsx3264 %r1, %r2", "bf 21 20 00 00 00 00 00"),
    ("movsx832 %r1, %r2", "bc 21 08 00 00 00 00 00"),
    ("movsx1632 %r1, %r2", "bc 21 10 00 00 00 00 00"),
    ("bswap16 %r0", "d7 00 00 00 10 00 00 00"),
    ("swap32 %r0", "d7 00 00 00 20 00 00 00"),
    ("bswap64 %r0", "d7 00 00 00 40 00 00 00"),
    ("ja32 +3", "06 00 00 00 03 00 00 00"),
    ("gotol -2", "06 00 00 00 fe ff ff ff"),
    ("jset %r1, 0x80, +1", "45 01 01 00 80 00 00 00"),
    ("jsge32 %r1, -1, -1", "76 01 ff ff ff ff ff ff"),
    ("jlt64 %r1, %r2, +2", "ad 21 02 00 00 00 00 00"),
    ("lddw %r1, map_by_fd(3)", "18 11 00 00 03 00 00 00 | 00 00 00 00 00 00 00 00"),
    ("lddw %r1, map_val_by_fd(3, 8)", "18 21 00 00 03 00 00 00 | 00 00 00 00 08 00 00 00"),
    ("lddw %r2, map_by_idx(0x7)", "18 52 00 00 07 00 00 00 | 00 00 00 00 00 00 00 00"),
    ("lddw %r2, map_val_by_idx(1, -1)", "18 62 00 00 01 00 00 00 | 00 00 00 00 ff ff ff ff"),
    ("lddw %r0, var_addr(0x100000002)", "18 30 00 00 02 00 00 00 | 00 00 00 00 01 00 00 00"),
    ("lddw %r0, code_addr(4)", "18 40 00 00 04 00 00 00 | 00 00 00 00 00 00 00 00"),
    ("call_btf 7", "85 20 00 00 07 00 00 00"),
]


@pytest.mark.parametrize(("text", "expected"), RBPF_SYNTAX + CONFORMANCE_SYNTAX)
def test_encoding(text: str, expected: str) -> None:
    assert encoding(text) == expected


def test_mnemonics_registers_and_hex_are_case_insensitive() -> None:
    assert encoding("ADD64 R1, 0X6aB") == encoding("add64 r1, 0x6ab")
    assert encoding("Lock Fetch ADD [r1], r2") == encoding("lock fetch add [r1], r2")


@pytest.mark.parametrize("comment", ["# note", "; note", "// note"])
def test_comments_and_blank_lines(comment: str) -> None:
    text = f"\n  {comment}\nmov r0, 0 {comment}\n\n   exit{comment}\n"
    assert encoding(text) == "b7 00 00 00 00 00 00 00 | 95 00 00 00 00 00 00 00"


def test_memory_operand_spellings_agree() -> None:
    spellings = ["[r1+0x8]", "[r1 + 8]", "[%r1+8]", "[ r1 +8 ]"]
    assert {encoding(f"ldxw r0, {mem}") for mem in spellings} == {"61 10 08 00 00 00 00 00"}


def test_label_jumps_forward_and_back() -> None:
    program = assemble(
        """
        mov r0, 0
    loop:
        add r0, 1
        jlt r0, 10, loop   ; back to add: offset -2
        jeq r0, 10, done
        mov r0, 99
    done: exit
        """
    )
    offsets = [insn.off for insn in program.instructions]
    assert offsets == [0, 0, -2, 1, 0, 0]


def test_label_on_its_own_line_and_at_end() -> None:
    program = assemble("ja end\nexit\nend:")
    assert program.instructions[0].off == 1


def test_labels_count_lddw_as_two_slots() -> None:
    program = assemble("ja over\nlddw r0, 1\nover: exit")
    assert program.instructions[0].off == 2


def test_implicit_exit_label() -> None:
    program = assemble("jeq r1, 0, exit\nmov r0, 1\nexit\nexit")
    assert program.instructions[0].off == 1


def test_user_exit_label_wins_over_implicit_one() -> None:
    program = assemble("jeq r1, 0, exit\nexit\nmov r0, 1\nexit: exit")
    assert program.instructions[0].off == 2


def test_local_call_and_long_jump_to_labels() -> None:
    program = assemble("call local func1\nja32 func1\nexit\nfunc1:\nmov r0, 2\nexit")
    call, jump = program.instructions[:2]
    assert (call.src, call.imm) == (1, 2)
    assert jump.imm == 1
    assert encoding("call local +2") == "85 10 00 00 02 00 00 00"


def test_several_labels_on_one_line() -> None:
    program = assemble("ja b\na: b: exit")
    assert program.instructions[0].off == 0


def test_program_name() -> None:
    assert assemble("exit", name="prog").name == "prog"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("mov r0, -2147483648", -(2**31)),
        ("mov r0, 4294967295", -1),
        ("mov r0, 0x80000000", -(2**31)),
        ("mov r0, +7", 7),
    ],
)
def test_32_bit_immediate_range(text: str, value: int) -> None:
    assert assemble(text).instructions[0].imm == value


@pytest.mark.parametrize(
    ("text", "value"),
    [("lddw r0, -0x8000000000000000", 2**63), ("lddw r0, 0xffffffffffffffff", 2**64 - 1)],
)
def test_64_bit_immediate_range(text: str, value: int) -> None:
    assert assemble(text).instructions[0].imm == value


# One case per error class: (text, line, column) of the offending token.
ERRORS = [
    pytest.param("addd r1, 2", 1, 1, id="unknown mnemonic"),
    pytest.param("exit\nlock fech add [r1], r2", 2, 1, id="unknown multi-word mnemonic"),
    pytest.param("5", 1, 1, id="not a mnemonic"),
    pytest.param("add64 5, r1", 1, 7, id="register expected"),
    pytest.param("add64 r1, foo", 1, 11, id="register or immediate expected"),
    pytest.param("mov r11, 1", 1, 5, id="register number"),
    pytest.param("mov r0, %r12", 1, 9, id="register number, conformance"),
    pytest.param("mov %rx, 1", 1, 5, id="not a register"),
    pytest.param("mov r0, w1", 1, 9, id="w registers are not registers"),
    pytest.param("ldxw r0, [r1+40000]", 1, 13, id="memory offset range"),
    pytest.param("ldxw r0, [r1*2]", 1, 13, id="unexpected character"),
    pytest.param("ldxw r0, [r1 2]", 1, 14, id="displacement sign expected"),
    pytest.param("ja +40000", 1, 4, id="jump offset range"),
    pytest.param("ja32 +0x80000000", 1, 6, id="long jump offset range"),
    pytest.param("add r1, 0x100000000", 1, 9, id="immediate range"),
    pytest.param("add r1, -2147483649", 1, 9, id="negative immediate range"),
    pytest.param("lddw r0, 0x10000000000000000", 1, 10, id="64-bit immediate range"),
    pytest.param("mov r0, 12abc", 1, 9, id="invalid number"),
    pytest.param("mov r0", 1, 7, id="missing operand"),
    pytest.param("exit r0", 1, 6, id="trailing operand"),
    pytest.param("lddw r1, foo(3)", 1, 10, id="unknown pseudo-source"),
    pytest.param("lddw r1, map_by_fd(3", 1, 21, id="unclosed pseudo-source"),
    pytest.param("lddw r1, map_val_by_fd(3, 0x100000000)", 1, 27, id="pseudo offset range"),
    pytest.param("mov r0, 0\nja foo", 2, 4, id="undefined label"),
    pytest.param("x:\nmov r0, 0\n  x: exit", 3, 3, id="duplicate label"),
    pytest.param("r1: exit", 1, 1, id="register as label"),
    pytest.param("call local", 1, 11, id="call target missing"),
]


@pytest.mark.parametrize(("text", "line", "column"), ERRORS)
def test_error_position(text: str, line: int, column: int) -> None:
    with pytest.raises(AssemblerError) as info:
        assemble(text)
    assert (info.value.line, info.value.column) == (line, column)
    assert info.value.text == text.splitlines()[line - 1]


def test_label_jump_out_of_range() -> None:
    text = "mov r0, 0\nja far\n" + "mov r0, 0\n" * 33_000 + "far: exit\n"
    with pytest.raises(AssemblerError) as info:
        assemble(text)
    assert (info.value.line, info.value.column) == (2, 4)


def test_writing_r10_is_left_to_the_loader() -> None:
    assert assemble("mov r10, 1").instructions[0].dst == 10
