"""Code templates: the common rows' machine code, learned from the general lowering.

The code of most ALU instructions, of the compares of conditional jumps, and of loads
and stores at constant offsets from r10 inside the frame, depends only on the
registers they name, an encoding class of
their immediate or displacement (fits in 8 bits or not, negative or not), and that
value written as the last bytes (x86 puts immediates and displacements last).  A
templated row keeps, for each such *shape*, the code the general lowering wrote the
first time it met the shape, with those trailing bytes cut off; every later
instruction of the shape is one look-up, an append and the value's bytes.  Shapes are
few (20 to 110 per row; 640 for a shift by a constant, one per register and count),
so templates are filled on first use and kept for the process: the general lowering
stays the one definition of the code, and a template only remembers it.

A template is learned only when the general lowering wrote nothing out of line, made
no label or branch to patch, and its code ends with exactly the value's bytes;
otherwise that instruction keeps the general code and the shape stays unlearned.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Protocol, TypeVar

from pybpf.isa.instruction import Instruction
from pybpf.isa.semantics import WIDTH_MASK
from pybpf.isa.table import Form, InsnSpec, Op
from pybpf.tiers.x86_64.encoder import Assembler

__all__ = ["Lowerer", "clear", "templated", "templated_compare"]


class Lowerer(Protocol):
    """What a lowering reads and writes of the compiler."""

    asm: Assembler
    cold: list[Callable[[], None]]
    frame_size: int
    zero_flag: int | None


L = TypeVar("L", bound=Lowerer)
Lowering = Callable[[L, int, Instruction], None]

_PACK_I32 = struct.Struct("<i").pack
_PACK_U32 = struct.Struct("<I").pack

_TEMPLATES: list[dict[int, bytes]] = []
"""Every row's learned shapes (see :func:`clear`)."""


def clear() -> None:
    """Forget every learned template (tests use it to compare with the general code)."""
    for shapes in _TEMPLATES:
        shapes.clear()


def _learner(
    general: Lowering[L], shapes: dict[int, bytes]
) -> Callable[[L, int, Instruction, int, bytes], None]:
    """Run the general lowering and remember its code for ``shape``, minus ``tail``."""

    def learn(compiler: L, pc: int, insn: Instruction, shape: int, tail: bytes) -> None:
        asm = compiler.asm
        start, stubs, references = len(asm.buf), len(compiler.cold), asm.references
        general(compiler, pc, insn)
        code = bytes(asm.buf[start:])
        if len(compiler.cold) == stubs and asm.references == references and code.endswith(tail):
            shapes[shape] = code[: len(code) - len(tail)]

    return learn


def _registers(general: Lowering[L], spec: InsnSpec) -> Lowering[L]:
    """Code that depends on ``dst`` and ``src`` alone (r10 as a source included)."""
    shapes: dict[int, bytes] = {}
    _TEMPLATES.append(shapes)
    learn = _learner(general, shapes)
    if spec.op in _SETS_ZERO_FLAG:

        def lower_flags(compiler: L, pc: int, insn: Instruction) -> None:
            code = shapes.get(insn.dst << 4 | insn.src)
            if code is None:
                learn(compiler, pc, insn, insn.dst << 4 | insn.src, b"")
                return
            compiler.asm.buf += code
            compiler.zero_flag = pc + 1

        return lower_flags

    def lower(compiler: L, pc: int, insn: Instruction) -> None:
        code = shapes.get(insn.dst << 4 | insn.src)
        if code is None:
            learn(compiler, pc, insn, insn.dst << 4 | insn.src, b"")
        else:
            compiler.asm.buf += code

    return lower


def _immediate(general: Lowering[L], spec: InsnSpec) -> Lowering[L]:
    """``OP dst, imm`` with the shortest immediate: imm8 for -128..127, else imm32."""
    shapes: dict[int, bytes] = {}
    _TEMPLATES.append(shapes)
    learn = _learner(general, shapes)
    sets_flag = spec.op in _SETS_ZERO_FLAG

    def lower(compiler: L, pc: int, insn: Instruction) -> None:
        imm = insn.imm
        short = -0x80 <= imm <= 0x7F
        shape = insn.dst << 1 | short
        code = shapes.get(shape)
        if code is None:
            learn(compiler, pc, insn, shape, bytes((imm & 0xFF,)) if short else _PACK_I32(imm))
            return
        buf = compiler.asm.buf
        buf += code
        if short:
            buf.append(imm & 0xFF)
        else:
            buf += _PACK_I32(imm)
        if sets_flag:
            compiler.zero_flag = pc + 1

    return lower


def _shift_immediate(general: Lowering[L], spec: InsnSpec) -> Lowering[L]:
    """A shift by a constant: the code of each register and (masked) count."""
    shapes: dict[int, bytes] = {}
    _TEMPLATES.append(shapes)
    learn = _learner(general, shapes)
    mask = spec.width - 1

    def lower(compiler: L, pc: int, insn: Instruction) -> None:
        shape = insn.dst << 6 | insn.imm & mask
        code = shapes.get(shape)
        if code is None:
            learn(compiler, pc, insn, shape, b"")
        else:
            compiler.asm.buf += code

    return lower


def _frame_access(general: Lowering[L], spec: InsnSpec) -> Lowering[L]:
    """A load or a store of a register at a constant offset from r10 inside the frame
    (which the general lowering addresses as ``[rbp + off]``, unchecked); any other
    access takes the general lowering.  The displacement is disp8 from -128 up."""
    shapes: dict[int, bytes] = {}
    _TEMPLATES.append(shapes)
    learn = _learner(general, shapes)
    size = spec.size
    loads = spec.op is not Op.STORE

    def lower(compiler: L, pc: int, insn: Instruction) -> None:
        off = insn.off
        if loads:
            base, reg = insn.src, insn.dst
        else:
            base, reg = insn.dst, insn.src
        if base != 10 or reg == 10 or not -compiler.frame_size <= off <= -size:
            general(compiler, pc, insn)
        elif off >= -0x80:
            code = shapes.get(reg << 1 | 1)
            if code is None:
                learn(compiler, pc, insn, reg << 1 | 1, bytes((off & 0xFF,)))
            else:
                buf = compiler.asm.buf
                buf += code
                buf.append(off & 0xFF)
        else:
            code = shapes.get(reg << 1)
            if code is None:
                learn(compiler, pc, insn, reg << 1, _PACK_I32(off))
            else:
                buf = compiler.asm.buf
                buf += code
                buf += _PACK_I32(off)

    return lower


Shape = Callable[[Lowerer, Instruction], tuple[int, bytes] | None]
"""An instruction's shape and the bytes its code ends with, or None when the general
lowering must write it."""


def _tailed(
    shape_of: Callable[[InsnSpec], Shape],
) -> Callable[[Lowering[L], InsnSpec], Lowering[L]]:
    """Templates for rows whose shape and trailing bytes ``shape_of(spec)`` computes."""

    def make(general: Lowering[L], spec: InsnSpec) -> Lowering[L]:
        shapes: dict[int, bytes] = {}
        _TEMPLATES.append(shapes)
        learn = _learner(general, shapes)
        find = shape_of(spec)

        def lower(compiler: L, pc: int, insn: Instruction) -> None:
            found = find(compiler, insn)
            if found is None:
                general(compiler, pc, insn)
                return
            shape, tail = found
            code = shapes.get(shape)
            if code is None:
                learn(compiler, pc, insn, shape, tail)
                return
            buf = compiler.asm.buf
            buf += code
            buf += tail

        return lower

    return make


def _move_immediate(spec: InsnSpec) -> Shape:
    """``mov dst, imm``: a 32-bit pattern last, whose form depends on the sign."""
    return lambda _compiler, insn: (
        insn.dst << 1 | (insn.imm < 0),
        _PACK_U32(insn.imm & 0xFFFF_FFFF),
    )


def _compare_immediate(spec: InsnSpec) -> Shape:
    """``cmp dst, imm`` (imm8 or imm32), or ``test dst, dst`` for a compare with 0."""

    def shape(_compiler: Lowerer, insn: Instruction) -> tuple[int, bytes]:
        imm = insn.imm
        if imm == 0:
            return insn.dst << 2, b""
        if -0x80 <= imm <= 0x7F:
            return insn.dst << 2 | 1, bytes((imm & 0xFF,))
        return insn.dst << 2 | 2, _PACK_I32(imm)

    return shape


def _test_immediate(spec: InsnSpec) -> Shape:
    """``test dst, imm32``: there is no imm8 form."""
    return lambda _compiler, insn: (insn.dst, _PACK_U32(insn.imm & 0xFFFF_FFFF))


def _frame_store_immediate(spec: InsnSpec) -> Shape:
    """An immediate store at a constant offset from r10 inside the frame: displacement
    then the immediate (the store's size, at most 4 bytes) last."""
    size = spec.size
    imm_bytes = min(size, 4)
    imm_mask = WIDTH_MASK[imm_bytes * 8]

    def shape(compiler: Lowerer, insn: Instruction) -> tuple[int, bytes] | None:
        off = insn.off
        if insn.dst != 10 or not -compiler.frame_size <= off <= -size:
            return None
        short = off >= -0x80
        disp = bytes((off & 0xFF,)) if short else _PACK_I32(off)
        return short, disp + (insn.imm & imm_mask).to_bytes(imm_bytes, "little")

    return shape


_SETS_ZERO_FLAG = frozenset({Op.ADD, Op.SUB, Op.AND, Op.OR, Op.XOR})
"""Rows whose general lowering records that the zero flag tells whether ``dst`` is 0."""

_KINDS: dict[tuple[Op, Form], Callable[[Lowering[L], InsnSpec], Lowering[L]]] = {
    **{(op, Form.ALU_REG): _registers for op in (Op.MOV, Op.MUL, Op.LSH, Op.RSH, Op.ARSH)},
    **{(op, Form.ALU_REG): _registers for op in _SETS_ZERO_FLAG},
    **{(op, Form.UNARY): _registers for op in (Op.NEG, Op.LE, Op.BE, Op.BSWAP)},
    **{(op, Form.ALU_IMM): _immediate for op in (*_SETS_ZERO_FLAG, Op.MUL)},
    (Op.MOV, Form.ALU_IMM): _tailed(_move_immediate),
    **{(op, Form.ALU_IMM): _shift_immediate for op in (Op.LSH, Op.RSH, Op.ARSH)},
    (Op.LOAD, Form.LOAD): _frame_access,
    (Op.LOADSX, Form.LOAD): _frame_access,
    (Op.STORE, Form.STORE_REG): _frame_access,
    (Op.STORE, Form.STORE_IMM): _tailed(_frame_store_immediate),
}
"""The templated (operation, form) pairs, and how each finds its shape."""


def templated(spec: InsnSpec, general: Lowering[L]) -> Lowering[L]:
    """``spec``'s lowering: through templates when its row has them, else ``general``."""
    kind = _KINDS.get((spec.op, spec.form))
    return general if kind is None else kind(general, spec)


def templated_compare(spec: InsnSpec, general: Lowering[L]) -> Lowering[L]:
    """The flag-setting part of a conditional jump of row ``spec``, through templates."""
    if spec.form is Form.COND_REG:
        return _registers(general, spec)
    return _tailed(_test_immediate if spec.op is Op.JSET else _compare_immediate)(general, spec)
