"""A Python API for writing programs, with one method per mnemonic generated from the table.

Every mnemonic and alias in :data:`~pybpf.isa.table.BY_MNEMONIC` becomes a real
method of :class:`ProgramBuilder` (spaces become ``_``, Python keywords get a
trailing ``_``: ``lock_fetch_add``, ``and_``).  Arguments follow the operand order
of the assembly syntax, with the punctuation left out:

* registers are :class:`Reg` values (``R0`` .. ``R10``); a plain ``int`` is always an
  immediate, so ``b.add64(R1, R2)`` and ``b.add64(R1, 2)`` pick different rows;
* a memory operand ``[reg+off]`` is two arguments, ``reg, off``; a trailing offset
  may be left out (``b.ldxw(R0, R1)`` is ``ldxw r0, [r1+0]``);
* jump and call targets are label names (``str``) or signed offsets (``int``);
* keywords of the syntax are strings: ``b.call("local", "fn")``,
  ``b.lddw(R1, "map_by_fd", 3)`` (the 64-bit value, whose high half is the
  ``map_val_*`` offset).

Labels are resolved by :meth:`ProgramBuilder.build`.  Bad operands raise
:class:`~pybpf.errors.AssemblerError` whose ``line`` is the instruction's number
(1-based) and ``column`` the argument's; a call matching no form raises TypeError.
"""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, replace
from enum import IntEnum
from typing import TYPE_CHECKING

from pybpf.asm import operands as rules
from pybpf.asm.operands import OPERANDS, Draft, LabelError, LabelRef, PartKind
from pybpf.errors import AssemblerError
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import BY_MNEMONIC, InsnSpec, Op
from pybpf.program import Program


class Reg(IntEnum):
    """An eBPF register; R10 is the read-only frame pointer."""

    R0 = 0
    R1 = 1
    R2 = 2
    R3 = 3
    R4 = 4
    R5 = 5
    R6 = 6
    R7 = 7
    R8 = 8
    R9 = 9
    R10 = 10


R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 = Reg

_Arg = int | str


@dataclass(frozen=True)
class _Param:
    """One argument of a generated method: an operand part, minus punctuation."""

    kind: PartKind
    field: str = ""
    text: str = ""
    optional: bool = False

    @property
    def label(self) -> str:
        """How usage messages name the argument."""
        if self.kind is PartKind.KEYWORD:
            return repr(self.text)
        name = _PARAM_NAMES.get(self.kind, self.field)
        return f"{name}=0" if self.optional else name


_PARAM_NAMES: dict[PartKind, str] = {
    PartKind.IMM: "imm",
    PartKind.IMM64: "imm64",
    PartKind.DISPLACEMENT: "off",
    PartKind.JUMP: "target",
    PartKind.TARGET: "target",
}


def _params(spec: InsnSpec) -> tuple[_Param, ...]:
    params: list[_Param] = []
    for part in OPERANDS[spec.form]:
        if part.kind is PartKind.PSEUDO:
            params.append(_Param(PartKind.KEYWORD, text=rules.pseudo_name(spec)))
            params.append(_Param(PartKind.IMM64, part.field))
        elif part.kind is not PartKind.PUNCT:
            params.append(_Param(part.kind, part.field, part.text))
    if params and params[-1].kind is PartKind.DISPLACEMENT:
        params[-1] = replace(params[-1], optional=True)
    return tuple(params)


def _is_int(arg: object) -> bool:
    return isinstance(arg, int) and not isinstance(arg, bool | Reg)


_ACCEPTS: dict[PartKind, Callable[[_Param, object], bool]] = {
    PartKind.REGISTER: lambda param, arg: isinstance(arg, Reg),
    PartKind.IMM: lambda param, arg: _is_int(arg),
    PartKind.IMM64: lambda param, arg: _is_int(arg),
    PartKind.DISPLACEMENT: lambda param, arg: _is_int(arg),
    PartKind.JUMP: lambda param, arg: _is_int(arg) or isinstance(arg, str),
    PartKind.TARGET: lambda param, arg: _is_int(arg) or isinstance(arg, str),
    PartKind.KEYWORD: lambda param, arg: arg == param.text,
}


def _fits(params: tuple[_Param, ...], args: tuple[_Arg, ...]) -> bool:
    required = sum(not param.optional for param in params)
    return required <= len(args) <= len(params) and all(
        _ACCEPTS[param.kind](param, arg) for param, arg in zip(params, args, strict=False)
    )


def _number(arg: _Arg) -> int:
    if isinstance(arg, str):
        raise TypeError(f"expected an integer, got {arg!r}")
    return int(arg)


_Store = Callable[[_Param, _Arg, Draft, int], None]
"""Puts one argument into a draft; raises ValueError when it does not fit."""


def _value_store(convert: Callable[[int], int]) -> _Store:
    def store(param: _Param, arg: _Arg, draft: Draft, column: int) -> None:
        draft.fields[param.field] = convert(_number(arg))

    return store


def _target_store(bits: int) -> _Store:
    def store(param: _Param, arg: _Arg, draft: Draft, column: int) -> None:
        if isinstance(arg, str):
            draft.refs.append(LabelRef(param.field, arg, bits, column))
        else:
            draft.fields[param.field] = rules.signed(arg, bits)

    return store


_STORES: dict[PartKind, _Store] = {
    PartKind.REGISTER: _value_store(rules.register),
    PartKind.IMM: _value_store(rules.imm32),
    PartKind.IMM64: _value_store(rules.imm64),
    PartKind.DISPLACEMENT: _value_store(lambda value: rules.signed(value, 16)),
    PartKind.JUMP: _target_store(16),
    PartKind.TARGET: _target_store(32),
    PartKind.KEYWORD: lambda param, arg, draft, column: None,
}


class ProgramBuilder:
    """Builds a :class:`~pybpf.program.Program` one instruction at a time.

    >>> b = ProgramBuilder()
    >>> prog = b.mov64(R0, 0).label("loop").add64(R0, 1).jlt(R0, 10, "loop").exit().build()

    Every instruction method returns the builder, so calls chain.
    """

    def __init__(self) -> None:
        self._drafts: list[tuple[int, Draft]] = []
        self._labels: dict[str, int] = {}
        self._pc = 0

    @property
    def pc(self) -> int:
        """Slot index the next instruction will get."""
        return self._pc

    def label(self, name: str) -> ProgramBuilder:
        """Name the slot of the next instruction, as a jump or call target."""
        if name in self._labels:
            raise AssemblerError(
                f"duplicate label '{name}' (first defined at slot {self._labels[name]})",
                len(self._drafts) + 1,
                1,
            )
        self._labels[name] = self._pc
        return self

    def emit(self, instruction: Instruction) -> ProgramBuilder:
        """Append an already built instruction."""
        fields = {name: getattr(instruction, name) for name in ("dst", "src", "off", "imm")}
        return self._add(Draft(instruction.spec, fields))

    def build(self, name: str = "") -> Program:
        """The finished program, with every label resolved."""
        labels = dict(self._labels)
        exits = [pc for pc, draft in self._drafts if draft.spec.op is Op.EXIT]
        if exits:
            labels.setdefault("exit", exits[0])
        instructions = []
        for number, (pc, draft) in enumerate(self._drafts, 1):
            try:
                instructions.append(draft.resolve(pc, labels))
            except LabelError as exc:
                raise AssemblerError(str(exc), number, exc.ref.column) from None
        return Program(tuple(instructions), name)

    def _add(self, draft: Draft) -> ProgramBuilder:
        self._drafts.append((self._pc, draft))
        self._pc += draft.spec.slots
        return self

    def _append(
        self, spec: InsnSpec, params: tuple[_Param, ...], args: tuple[_Arg, ...]
    ) -> ProgramBuilder:
        draft = Draft(spec)
        for column, (param, arg) in enumerate(zip(params, args, strict=False), 1):
            try:
                _STORES[param.kind](param, arg, draft, column)
            except ValueError as exc:
                raise AssemblerError(str(exc), len(self._drafts) + 1, column) from None
        return self._add(draft)

    if TYPE_CHECKING:
        # The instruction methods are generated below; tell type checkers they exist.
        def __getattr__(self, name: str) -> Callable[..., ProgramBuilder]: ...


def method_name(mnemonic: str) -> str:
    """The builder method of a mnemonic: ``lock fetch add`` -> ``lock_fetch_add``."""
    name = mnemonic.replace(" ", "_")
    return f"{name}_" if keyword.iskeyword(name) else name


def _syntax(spec: InsnSpec) -> str:
    operands = spec.form.value.replace("pseudo", rules.pseudo_name(spec) or "pseudo")
    return f"``{spec.mnemonic} {operands}``" if operands else f"``{spec.mnemonic}``"


def _make_method(name: str, rows: tuple[InsnSpec, ...]) -> Callable[..., ProgramBuilder]:
    forms = [(row, _params(row)) for row in rows]
    usage = " | ".join(f"{name}({', '.join(p.label for p in params)})" for _row, params in forms)

    def method(self: ProgramBuilder, *args: _Arg) -> ProgramBuilder:
        for row, params in forms:
            if _fits(params, args):
                return self._append(row, params, args)
        raise TypeError(f"{name}() takes {usage}; got {args!r}")

    syntaxes = list(dict.fromkeys(_syntax(row) for row in rows))
    listed = syntaxes[0] if len(syntaxes) == 1 else ", ".join(syntaxes[:-1]) + " or " + syntaxes[-1]
    method.__name__ = name
    method.__qualname__ = f"ProgramBuilder.{name}"
    method.__doc__ = f"Append {listed}; returns the builder.\n\nCall as {usage}."
    return method


def _install() -> None:
    for mnemonic, rows in BY_MNEMONIC.items():
        name = method_name(mnemonic)
        if name in vars(ProgramBuilder):
            raise ValueError(f"builder method {name!r} of {mnemonic!r} clashes with another")
        setattr(ProgramBuilder, name, _make_method(name, rows))


_install()
