"""Decoding bytecode into instructions and encoding it back (RFC 9669, section 3)."""

from __future__ import annotations

import pytest

from pybpf import DecodeError, Program
from pybpf.isa import Op, decode, encode


def slot(opcode: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return (
        bytes([opcode, (src << 4) | dst])
        + off.to_bytes(2, "little", signed=True)
        + imm.to_bytes(4, "little", signed=True)
    )


EXIT = slot(0x95)


def test_fields_decode_little_endian_and_signed() -> None:
    (insn,) = decode(slot(0x07, dst=1, imm=0x605))
    assert (insn.spec.mnemonic, insn.dst, insn.imm) == ("add64", 1, 0x605)
    (insn,) = decode(slot(0x79, dst=2, src=10, off=-8))
    assert (insn.spec.op, insn.dst, insn.src, insn.off) == (Op.LOAD, 2, 10, -8)
    (insn,) = decode(slot(0xB7, dst=0, imm=-1))
    assert insn.imm == -1


def test_lddw_spans_two_slots_and_holds_the_whole_value() -> None:
    code = slot(0x18, dst=3, imm=0x55667788) + slot(0, imm=0x11223344 - 2**32 * 0) + EXIT
    program = Program.from_bytes(code)
    assert program.pcs == (0, 2)
    assert program.instructions[0].imm == 0x1122334455667788
    assert program.by_pc[1] is None
    assert program.to_bytes() == code


def test_lddw_with_high_bits_set_round_trips() -> None:
    code = slot(0x18, imm=-1) + slot(0, imm=-(2**31)) + EXIT
    assert Program.from_bytes(code).instructions[0].imm == 0x80000000FFFFFFFF
    assert Program.from_bytes(code).to_bytes() == code


@pytest.mark.parametrize(
    ("code", "pc"),
    [
        (slot(0x00) + EXIT, 0),  # opcode 0 is no instruction
        (EXIT + slot(0x8C), 1),  # neg with a register source
        (slot(0x07, dst=11) + EXIT, 0),  # r11 does not exist
        (slot(0x0F, dst=1, src=12) + EXIT, 0),
        (slot(0x07, dst=1, off=3) + EXIT, 0),  # reserved offset of add64 imm
        (slot(0x0F, dst=1, src=2, imm=1) + EXIT, 0),  # reserved imm of add64 reg
        (slot(0x95, dst=1), 0),  # exit with a register
        (slot(0xDC, dst=1, imm=8) + EXIT, 0),  # be8 is not a width
        (slot(0xD7, dst=1, imm=24) + EXIT, 0),
        (slot(0x3F, dst=1, src=2, off=2) + EXIT, 0),  # div with off=2
        (slot(0xB7, dst=1, off=8) + EXIT, 0),  # movsx has no immediate form
        (slot(0xDB, dst=1, src=2, imm=0x10) + EXIT, 0),  # atomic sub does not exist
        (slot(0x18, dst=1), 0),  # lddw missing its second slot
        (slot(0x18, dst=1) + slot(0x07, imm=1), 0),  # second slot must be empty
        (slot(0x85, src=3, imm=1) + EXIT, 0),  # call with an unknown kind
    ],
)
def test_invalid_encodings_are_rejected_with_their_index(code: bytes, pc: int) -> None:
    with pytest.raises(DecodeError) as info:
        Program.from_bytes(code)
    assert info.value.pc == pc


def test_length_must_be_whole_slots() -> None:
    with pytest.raises(DecodeError):
        Program.from_bytes(EXIT + b"\x00\x00\x00")


def test_every_row_encodes_and_decodes_to_itself() -> None:
    from pybpf.isa import INSTRUCTIONS, Instruction
    from pybpf.isa.table import FORM_FIELDS

    for spec in INSTRUCTIONS:
        used = FORM_FIELDS[spec.form]
        insn = Instruction.make(spec, dst=1 if "dst" in used else 0, src=2 if "src" in used else 0)
        code = encode([insn])
        (again,) = decode(code)
        assert again.spec is spec
        assert encode([again]) == code
