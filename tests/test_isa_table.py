"""Invariants of the instruction table, and that every tier covers every row."""

from __future__ import annotations

import pytest

from pybpf.isa import BY_MNEMONIC, BY_OPCODE, INSTRUCTIONS, Form, Group, InsnClass, Op
from pybpf.isa.fields import AluCode, JmpCode, Source
from pybpf.tiers import available_tiers


def test_rows_have_unique_keys() -> None:
    keys = [row.key for row in INSTRUCTIONS]
    assert len(keys) == len(set(keys))


def test_every_rfc_group_is_present() -> None:
    assert {row.group for row in INSTRUCTIONS} == set(Group)


@pytest.mark.parametrize(
    ("opcode", "mnemonic"),
    [
        (0x07, "add64"),
        (0x0F, "add64"),
        (0x04, "add32"),
        (0x84, "neg32"),
        (0x87, "neg64"),
        (0xB7, "mov64"),
        (0xBC, "mov32"),
        (0xD4, "le16"),
        (0xDC, "be16"),
        (0xD7, "bswap16"),
        (0x05, "ja"),
        (0x06, "ja32"),
        (0x15, "jeq"),
        (0x1E, "jeq32"),
        (0x85, "call"),
        (0x8D, "callx"),
        (0x95, "exit"),
        (0x18, "lddw"),
        (0x61, "ldxw"),
        (0x69, "ldxh"),
        (0x71, "ldxb"),
        (0x79, "ldxdw"),
        (0x81, "ldxsw"),
        (0x89, "ldxsh"),
        (0x91, "ldxsb"),
        (0x62, "stw"),
        (0x6A, "sth"),
        (0x72, "stb"),
        (0x7A, "stdw"),
        (0x63, "stxw"),
        (0x7B, "stxdw"),
        (0xC3, "lock add32"),
        (0xDB, "lock add"),
        (0x20, "ldabsw"),
        (0x28, "ldabsh"),
        (0x30, "ldabsb"),
        (0x40, "ldindw"),
        (0x48, "ldindh"),
        (0x50, "ldindb"),
    ],
)
def test_known_opcodes_from_rfc_9669(opcode: int, mnemonic: str) -> None:
    # the first row of each opcode (selector value 0 / the default) has this name
    assert BY_OPCODE[opcode][0].mnemonic == mnemonic


def test_every_alu_and_jump_code_is_covered() -> None:
    for cls in (InsnClass.ALU, InsnClass.ALU64):
        for code in AluCode:
            sources = (Source.K,) if code is AluCode.NEG else (Source.K, Source.X)
            if code is AluCode.END and cls is InsnClass.ALU64:
                sources = (Source.K,)
            for source in sources:
                assert cls | source | code in BY_OPCODE, hex(cls | source | code)
    for code in JmpCode:
        if code in (JmpCode.CALL, JmpCode.EXIT, JmpCode.JA):
            continue
        for cls in (InsnClass.JMP, InsnClass.JMP32):
            for source in Source:
                assert cls | source | code in BY_OPCODE


def test_opcodes_outside_the_isa_are_absent() -> None:
    # NEG with a register source, ALU64 BE, JMP32 CALL/EXIT are not instructions
    for opcode in (0x8C, 0x8F, 0xDF, 0x86, 0x96, 0x38, 0x58, 0x00):
        assert opcode not in BY_OPCODE, hex(opcode)


def test_mnemonics_resolve_back_to_their_rows() -> None:
    for row in INSTRUCTIONS:
        assert row in BY_MNEMONIC[row.mnemonic]
        for alias in row.aliases:
            assert row in BY_MNEMONIC[alias]


def test_wide_rows_are_exactly_the_immediate_loads() -> None:
    wide = {row.op for row in INSTRUCTIONS if row.slots == 2}
    assert Op.LDDW in wide
    assert all(row.form in (Form.LDDW, Form.LDDW_PSEUDO) for row in INSTRUCTIONS if row.slots == 2)


def test_interpreter_lowers_or_refuses_every_operation() -> None:
    from pybpf.tiers.interp import LOWERINGS, REFUSED

    for row in INSTRUCTIONS:
        assert (row.op in LOWERINGS) != (row.op in REFUSED), row.mnemonic
        if row.op in REFUSED:
            assert REFUSED[row.op], "a refusal must say why"


def test_the_interpreter_is_always_available() -> None:
    assert ("interp", None) in available_tiers()
