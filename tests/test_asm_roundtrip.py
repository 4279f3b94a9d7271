"""Property tests: disassembling then assembling any valid program gives back its bytes."""

from __future__ import annotations

import struct

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from pybpf.asm import assemble, disassemble
from pybpf.errors import DecodeError
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import BY_OPCODE, FORM_FIELDS, INSTRUCTIONS, Form, InsnSpec
from pybpf.program import Program

EXAMPLES = settings(max_examples=200, deadline=None)

REGISTERS = st.integers(0, 10)
FIELDS: dict[str, st.SearchStrategy[int]] = {
    "dst": REGISTERS,
    "src": REGISTERS,
    "off": st.integers(-(2**15), 2**15 - 1),
    "imm": st.integers(-(2**31), 2**31 - 1),
}
IMM64 = st.integers(0, 2**64 - 1)

OFF_JUMPS = (Form.JUMP, Form.COND_REG, Form.COND_IMM)
IMM_JUMPS = (Form.JUMP_LONG, Form.CALL_LOCAL)


@st.composite
def instructions(draw: st.DrawFn, spec: InsnSpec | None = None) -> Instruction:
    """A valid instruction of a random row, with random values in every field it uses."""
    spec = spec or draw(st.sampled_from(INSTRUCTIONS))
    fields = {
        name: draw(IMM64 if name == "imm" and spec.slots == 2 else FIELDS[name])
        for name in sorted(FORM_FIELDS[spec.form])
    }
    return Instruction.make(spec, **fields)


programs = st.lists(instructions(), min_size=1, max_size=24).map(
    lambda insns: Program(tuple(insns))
)


def assert_round_trips(program: Program, labels: bool) -> None:
    text = disassemble(program, labels=labels)
    assert assemble(text).to_bytes() == program.to_bytes(), text


@EXAMPLES
@given(programs)
def test_asm_round_trip(program: Program) -> None:
    assert_round_trips(program, labels=False)
    assert_round_trips(program, labels=True)
    disassemble(program, "pseudo-c")


@EXAMPLES
@given(programs, st.data())
def test_asm_round_trip_with_labels_in_range(program: Program, data: st.DataObject) -> None:
    """Point every jump and local call at an instruction (or the end), so labels are used."""
    targets = [*program.pcs, program.slot_count]
    fixed = []
    for pc, insn in program:
        form = insn.spec.form
        if form in OFF_JUMPS or form in IMM_JUMPS:
            delta = data.draw(st.sampled_from(targets)) - (pc + 1)
            insn = insn._replace(off=delta) if form in OFF_JUMPS else insn._replace(imm=delta)
        fixed.append(insn)
    program = Program(tuple(fixed))
    assert_round_trips(program, labels=True)
    assert ":" in disassemble(program, labels=True) or not program.jump_targets


SLOT = struct.Struct("<BBhi")
noise_slots = st.builds(
    SLOT.pack,
    st.sampled_from(sorted(BY_OPCODE)),
    st.one_of(st.just(0), st.integers(0, 255)),
    st.one_of(st.just(0), st.integers(-(2**15), 2**15 - 1)),
    st.one_of(st.just(0), st.integers(-(2**31), 2**31 - 1)),
)
"""Slots with a known opcode and arbitrary fields; many do not decode, and are rejected."""

byte_strings = st.lists(
    st.one_of(instructions().map(Instruction.encode), noise_slots), min_size=1, max_size=8
).map(b"".join)


@EXAMPLES
@given(byte_strings)
def test_decodable_bytes_round_trip(data: bytes) -> None:
    try:
        program = Program.from_bytes(data)
    except DecodeError:
        reject()
    assert program.to_bytes() == data
    assert assemble(disassemble(program)).to_bytes() == data
    assert assemble(disassemble(program, labels=True)).to_bytes() == data
