"""Operand syntax of every instruction form, compiled once from the table's templates.

Each :class:`~pybpf.isa.table.Form` value is an operand template such as
``dst, [src+off]``.  This module turns every template into a tuple of :class:`Part`
that the assembler matches, the disassembler prints and the builder maps to method
arguments, so the three can never disagree.  It also owns the range rules for field
values and the half-built :class:`Draft` instructions whose labels are resolved last.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum, auto

from pybpf.asm.lexer import Kind, tokenize
from pybpf.isa.fields import REGISTER_COUNT
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import PSEUDO_NAMES, Form, InsnSpec

U32_MASK = (1 << 32) - 1
U64_MASK = (1 << 64) - 1


class PartKind(Enum):
    """What one piece of an operand template stands for."""

    REGISTER = auto()
    IMM = auto()
    """A 32-bit immediate."""
    IMM64 = auto()
    DISPLACEMENT = auto()
    """The ``+off`` of a memory operand: optional, signed 16-bit."""
    JUMP = auto()
    """A 16-bit pc-relative jump offset in ``off``: ``+N``, ``-N`` or a label."""
    TARGET = auto()
    """A 32-bit pc-relative target in ``imm``: ``+N``, ``-N`` or a label."""
    PSEUDO = auto()
    """A 64-bit immediate pseudo-source: ``name(N)`` or ``name(N, M)``."""
    KEYWORD = auto()
    PUNCT = auto()


@dataclass(frozen=True)
class Part:
    """One piece of an operand template: the field it fills, or its literal text."""

    kind: PartKind
    field: str = ""
    text: str = ""


_FIELD_WORDS: dict[str, tuple[PartKind, str]] = {
    "dst": (PartKind.REGISTER, "dst"),
    "src": (PartKind.REGISTER, "src"),
    "imm": (PartKind.IMM, "imm"),
    "imm64": (PartKind.IMM64, "imm"),
    "off": (PartKind.JUMP, "off"),
    "target": (PartKind.TARGET, "imm"),
}
"""Template words that stand for an instruction field; any other word is a keyword."""

_GROUPS: tuple[tuple[tuple[str, ...], Part], ...] = (
    (("+", "off"), Part(PartKind.DISPLACEMENT, "off")),
    (("pseudo", "(", "imm64", ")"), Part(PartKind.PSEUDO, "imm")),
)
"""Token sequences of a template that form one part."""


def _compile(template: str) -> tuple[Part, ...]:
    tokens = tokenize(template)[:-1]
    parts: list[Part] = []
    i = 0
    while i < len(tokens):
        texts = tuple(token.text for token in tokens[i:])
        group = next(((n, p) for n, p in _GROUPS if texts[: len(n)] == n), None)
        if group is not None:
            parts.append(group[1])
            i += len(group[0])
            continue
        token = tokens[i]
        if token.kind is Kind.WORD:
            kind, name = _FIELD_WORDS.get(token.text, (PartKind.KEYWORD, ""))
            parts.append(Part(kind, name, token.text))
        else:
            parts.append(Part(PartKind.PUNCT, "", token.text))
        i += 1
    return tuple(parts)


OPERANDS: dict[Form, tuple[Part, ...]] = {form: _compile(form.value) for form in Form}
"""The compiled operand template of every form."""


def pseudo_name(spec: InsnSpec) -> str:
    """Assembly name of a pseudo-source row (``map_by_fd``); empty for other rows."""
    return PSEUDO_NAMES.get(spec.op, "")


# Range rules shared by the assembler and the builder.  Each returns the value as it
# is stored in the instruction, or raises ValueError saying what does not fit.


def register(number: int) -> int:
    """A register number r0 to r10."""
    if not 0 <= number < REGISTER_COUNT:
        raise ValueError(f"invalid register r{number} (registers are r0 to r{REGISTER_COUNT - 1})")
    return number


def imm32(value: int) -> int:
    """A 32-bit immediate given signed or unsigned, stored signed."""
    if not -(1 << 31) <= value < (1 << 32):
        raise ValueError(f"immediate {value} does not fit in 32 bits")
    return value - (1 << 32) if value >= (1 << 31) else value


def imm64(value: int) -> int:
    """A 64-bit immediate given signed or unsigned, stored unsigned."""
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"immediate {value} does not fit in 64 bits")
    return value & U64_MASK


def signed(value: int, bits: int) -> int:
    """A signed offset of ``bits`` bits (16 for ``off``, 32 for an ``imm`` target)."""
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(f"offset {value} does not fit in {bits} bits")
    return value


def pseudo_value(args: list[int]) -> int:
    """The 64-bit immediate of ``name(N)`` or ``name(N, M)`` (M is the high 32 bits)."""
    if len(args) == 1:
        return imm64(args[0])
    low, high = (imm32(arg) & U32_MASK for arg in args)
    return (high << 32) | low


def pseudo_args(value: int) -> tuple[int, ...]:
    """The arguments :func:`pseudo_value` reads back as ``value``: ``(N,)`` or ``(N, M)``."""
    low, high = value & U32_MASK, value >> 32
    return (low, high) if high else (low,)


@dataclass(frozen=True)
class LabelRef:
    """A label an operand names, to be turned into a pc-relative offset."""

    field: str
    name: str
    bits: int
    column: int = 0


class LabelError(ValueError):
    """A label reference that cannot be resolved; ``ref`` says which one."""

    def __init__(self, message: str, ref: LabelRef) -> None:
        super().__init__(message)
        self.ref = ref


@dataclass
class Draft:
    """An instruction whose label operands are not resolved yet."""

    spec: InsnSpec
    fields: dict[str, int] = field(default_factory=dict)
    refs: list[LabelRef] = field(default_factory=list)

    def resolve(self, pc: int, labels: Mapping[str, int]) -> Instruction:
        """The finished instruction at slot ``pc``; raises :class:`LabelError`."""
        fields = dict(self.fields)
        for ref in self.refs:
            if ref.name not in labels:
                raise LabelError(f"undefined label '{ref.name}'", ref)
            delta = labels[ref.name] - (pc + 1)
            try:
                fields[ref.field] = signed(delta, ref.bits)
            except ValueError:
                raise LabelError(
                    f"jump target out of range: '{ref.name}' is {delta} instructions away, "
                    f"which does not fit in {ref.bits} bits",
                    ref,
                ) from None
        return Instruction.make(self.spec, **fields)
