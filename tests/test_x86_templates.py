"""The x86-64 compiler's code templates write exactly the general lowering's code.

A template is learned from one instruction and reused for every other of the same
shape, so each templated row is swept over its registers and over immediates and
displacements on both sides of every encoding boundary: after warming the templates
on all of them, each instruction through its template must give the bytes (and the
zero-flag note) of the general lowering run on its own.  No native code runs, but
in the tests at the end: a left shift and the right shift that undoes it are written
as one instruction, which must give the interpreter's value.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pybpf import VM
from pybpf.asm import assemble
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import INSTRUCTIONS, Form, InsnSpec, Op
from pybpf.runtime.machine import MachineConfig
from pybpf.tiers import available_tiers
from pybpf.tiers.x86_64 import compiler, templates

FRAME = 512
IMMEDIATES = (0, 1, -1, 2, 3, 31, 32, 63, 64, 127, 128, -128, -129, 255, 256, 0x7FFF_FFFF)
IMMEDIATES += (-0x8000_0000, 0x1234_5678, -0x1234_5678, 0xFFFF, -0x10000, 1000)
OFFSETS = (-1, -2, -4, -8, -16, -120, -127, -128, -129, -130, -256, -504, -FRAME, 0, 8, -FRAME - 8)

Lowering = Callable[[compiler._Compiler, int, Instruction], None]

TEMPLATED = [
    spec
    for spec in INSTRUCTIONS
    if spec in compiler._ROWS and compiler._ROWS[spec].lower is not compiler._LOWERINGS[spec.op]
]
COMPARED = sorted(compiler._COMPARES, key=lambda spec: spec.mnemonic)


def _fresh() -> compiler._Compiler:
    program = assemble("exit")
    unit = compiler._Compiler(program, MachineConfig(stack_size=FRAME))
    unit.frame_size = FRAME
    return unit


def _run(lowering: Lowering, insn: Instruction) -> tuple[bytes, object]:
    unit = _fresh()
    lowering(unit, 7, insn)
    return bytes(unit.asm.buf), unit.zero_flag


def _instructions(spec: InsnSpec) -> Iterator[Instruction]:
    """Every register pair with a few values, or every register with every value."""
    form = spec.form
    uses_offset = form in (Form.LOAD, Form.STORE_REG, Form.STORE_IMM)
    for dst in range(11 if form in (Form.STORE_REG, Form.STORE_IMM) else 10):
        for src in (
            range(11) if form in (Form.ALU_REG, Form.COND_REG, Form.LOAD, Form.STORE_REG) else (0,)
        ):
            if uses_offset:
                values: tuple[tuple[int, int], ...] = tuple((off, 77) for off in OFFSETS)
                if form is Form.STORE_IMM:
                    values += tuple((-8, imm) for imm in IMMEDIATES) + ((-200, -3),)
            elif form in (Form.ALU_IMM, Form.COND_IMM):
                values = tuple((0, imm) for imm in IMMEDIATES)
            else:
                values = ((0, 0),)
            for off, imm in values:
                yield Instruction.make(spec, dst, src, off, imm)


def _sweep(
    specs: list[InsnSpec],
    templated: Callable[[InsnSpec], Lowering],
    general: Callable[[InsnSpec], Lowering],
) -> None:
    templates.clear()
    cases = [(spec, insn) for spec in specs for insn in _instructions(spec)]
    for spec, insn in cases:  # learn each shape from its first instruction
        _run(templated(spec), insn)
    for spec, insn in cases:
        assert _run(templated(spec), insn) == _run(general(spec), insn), insn


def test_the_templated_rows_are_the_common_alu_and_frame_rows() -> None:
    ops = {spec.op for spec in TEMPLATED}
    assert {Op.ADD, Op.XOR, Op.MOV, Op.MUL, Op.LSH, Op.LOAD, Op.STORE} <= ops
    assert not ops & {Op.DIV, Op.MOD, Op.CALL, Op.EXIT, Op.ATOMIC_ADD}


@pytest.mark.parametrize(
    "form", [Form.ALU_REG, Form.ALU_IMM, Form.UNARY, Form.LOAD, Form.STORE_REG, Form.STORE_IMM]
)
def test_templated_rows_write_the_general_code(form: Form) -> None:
    _sweep(
        [spec for spec in TEMPLATED if spec.form is form],
        lambda spec: compiler._ROWS[spec].lower,
        lambda spec: compiler._LOWERINGS[spec.op],
    )


def test_templated_compares_write_the_general_code() -> None:
    _sweep(COMPARED, compiler._COMPARES.__getitem__, lambda spec: compiler._Compiler.compare)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(TEMPLATED + COMPARED),
    st.integers(0, 9),
    st.integers(0, 10),
    st.integers(-0x8000, 0x7FFF),
    st.integers(-0x8000_0000, 0x7FFF_FFFF),
    st.data(),
)
def test_any_field_values_through_a_learned_template(
    spec: InsnSpec, dst: int, src: int, off: int, imm: int, data: st.DataObject
) -> None:
    """Learn from one instruction, then lower another of the same row."""
    is_compare = spec in compiler._COMPARES
    templated = compiler._COMPARES[spec] if is_compare else compiler._ROWS[spec].lower
    general = compiler._Compiler.compare if is_compare else compiler._LOWERINGS[spec.op]
    first = Instruction.make(spec, dst, src, off, imm)
    second = Instruction.make(
        spec,
        data.draw(st.integers(0, 9)) if data.draw(st.booleans()) else dst,
        src,
        data.draw(st.sampled_from([off, off ^ 1, -off, data.draw(st.integers(-FRAME, -1))])),
        data.draw(st.sampled_from([imm, imm ^ 1, imm >> 8, -imm & 0x7FFF_FFFF, imm & 0x7F])),
    )
    _run(templated, first)
    assert _run(templated, second) == _run(general, second)


PROGRAM_LINES = (
    "add r{d}, r{s}",
    "xor r{d}, {imm}",
    "mul r{d}, {imm}",
    "mov32 r{d}, {imm}",
    "lsh r{d}, {small}",
    "stxdw [r10-{slot}], r{s}",
    "ldxw r{d}, [r10-{slot}]",
    "stw [r10-{slot}], {imm}",
    "jgt r{d}, r{s}, +1",
    "jne r{d}, {imm}, +1",
    "jset r{d}, {imm}, +1",
)


def test_a_whole_program_compiles_the_same_with_templates_learned_or_not() -> None:
    rng = random.Random(11)
    lines = [f"mov r{n}, {n}" for n in range(10)]
    for _ in range(600):
        line = rng.choice(PROGRAM_LINES)
        imm = rng.choice([0, 1, -1, 127, 128, -129, 4096, -0x7000_0000, rng.randrange(1000)])
        slot = 8 * rng.randrange(1, 64)
        small = rng.randrange(64)
        lines.append(
            line.format(d=rng.randrange(10), s=rng.randrange(10), imm=imm, slot=slot, small=small)
        )
    program = assemble("\n".join([*lines, "exit"]))
    config = MachineConfig()
    templates.clear()
    learning = compiler.compile_program(program, config)
    learned = compiler.compile_program(program, config)
    assert learning.code == learned.code
    assert learning.offsets == learned.offsets


@pytest.mark.parametrize("impure", ["branch", "stub"])
def test_code_with_a_branch_or_a_stub_is_never_learned(impure: str) -> None:
    """Such code is not the same bytes elsewhere: every instruction keeps the general
    lowering (which here counts its calls)."""
    spec = next(spec for spec in TEMPLATED if spec.op is Op.ADD and spec.form is Form.ALU_REG)
    calls: list[int] = []

    def general(unit: compiler._Compiler, pc: int, insn: Instruction) -> None:
        calls.append(pc)
        if impure == "branch":
            unit.asm.jmp(unit.asm.label())
        else:
            unit.cold.append(lambda: None)
        unit.asm.buf += b"\x90"

    lower = templates.templated(spec, general)
    insn = Instruction.make(spec, 1, 2)
    for pc in range(3):
        lower(_fresh(), pc, insn)
    assert calls == [0, 1, 2]


# -- shift pairs ----------------------------------------------------------------------

NATIVE = pytest.mark.skipif(
    "x86_64" not in [name for name, reason in available_tiers() if reason is None],
    reason="x86-64 tier unavailable here",
)
PAIR_VALUES = (0, 1, 0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF, 0x1_0000_0000, 0x8000, 0x80)
PAIR_VALUES += (0xFFFF_FFFF_FFFF_FFFF, 0x8000_0000_0000_0000, 0x1234_5678_9ABC_DEF0)


@NATIVE
@pytest.mark.parametrize("second", ["rsh", "arsh"])
@pytest.mark.parametrize("count", [1, 8, 16, 31, 32, 33, 48, 56, 63, 64, 96])
def test_a_shift_and_its_inverse_give_the_interpreters_value(second: str, count: int) -> None:
    for value in PAIR_VALUES:
        program = assemble(
            f"lddw r3, {value}\nlsh r3, {count}\n{second} r3, {count}\nmov r0, r3\nexit"
        )
        assert VM(program, tier="x86_64").run() == VM(program).run(), (value, count)


@NATIVE
def test_the_widening_idioms_are_one_instruction() -> None:
    cases = {
        "lsh r3, 32\nrsh r3, 32": "mov r8d, r8d",
        "lsh r3, 32\narsh r3, 32": "movsxd r8, r8d",
        "lsh r3, 48\narsh r3, 48": "movsx r8, r8w",
        "lsh r3, 56\narsh r3, 56": "movsx r8, r8b",
        "lsh r3, 40\nrsh r3, 40": "and r8, 0xffffff",
    }
    for pair, code in cases.items():
        listing = VM(assemble(f"mov r3, r1\n{pair}\nmov r0, r3\nexit"), tier="x86_64").listing()
        assert code in listing and "shl" not in listing, pair
    # a right shift another way reaches, or of another register, keeps its own code
    for source in (
        "mov r3, r1\njeq r2, 7, +1\nlsh r3, 32\nrsh r3, 32\nmov r0, r3\nexit",
        "mov r3, r1\nlsh r3, 32\nrsh r4, 32\nmov r0, r3\nexit",
        "mov r3, r1\nlsh r3, 32\nrsh r3, 31\nmov r0, r3\nexit",
    ):
        listing = VM(assemble(source), tier="x86_64").listing()
        assert "shl" in listing and "shr" in listing, source
        assert VM(assemble(source), tier="x86_64").run(bytes(8)) == VM(assemble(source)).run(
            bytes(8)
        )
