"""Programs back to text: canonical assembly that :func:`assemble` reads back, or pseudo-C.

Canonical assembly prints each row's ``mnemonic`` followed by its operand template
(:data:`~pybpf.asm.operands.OPERANDS`), filled in as: registers ``r0``..``r10``;
32-bit immediates in signed decimal; 64-bit immediates in hexadecimal; memory
operands ``[r1+2]``, ``[r10-8]``, ``[r1+0]``; jump and call targets as signed
offsets ``+3`` / ``-1`` (or label names); pseudo-sources as ``map_by_fd(3)`` or,
when the high 32 bits are set, ``map_val_by_fd(3, 8)``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pybpf.asm.operands import OPERANDS, Part, PartKind, pseudo_args, pseudo_name
from pybpf.asm.pseudo_c import format_pseudo_c
from pybpf.isa.instruction import Instruction
from pybpf.isa.table import Op
from pybpf.program import Program

SYNTAXES = ("asm", "pseudo-c")
"""The syntaxes :func:`disassemble` and :func:`format_instruction` can print."""

_Render = Callable[[Part, Instruction, int, Mapping[int, str]], str]


def _field(part: Part, insn: Instruction) -> int:
    value: int = getattr(insn, part.field)
    return value


def _target(part: Part, insn: Instruction, pc: int, labels: Mapping[int, str]) -> str:
    delta = _field(part, insn)
    return labels.get(pc + 1 + delta, f"{delta:+d}")


def _pseudo(part: Part, insn: Instruction, pc: int, labels: Mapping[int, str]) -> str:
    args = ", ".join(str(arg) for arg in pseudo_args(insn.imm))
    return f"{pseudo_name(insn.spec)}({args})"


_RENDERERS: dict[PartKind, _Render] = {
    PartKind.REGISTER: lambda part, insn, pc, labels: f"r{_field(part, insn)}",
    PartKind.IMM: lambda part, insn, pc, labels: str(insn.imm),
    PartKind.IMM64: lambda part, insn, pc, labels: f"0x{insn.imm:x}",
    PartKind.DISPLACEMENT: lambda part, insn, pc, labels: f"{insn.off:+d}",
    PartKind.JUMP: _target,
    PartKind.TARGET: _target,
    PartKind.PSEUDO: _pseudo,
    PartKind.KEYWORD: lambda part, insn, pc, labels: f"{part.text} ",
    PartKind.PUNCT: lambda part, insn, pc, labels: ", " if part.text == "," else part.text,
}


def _format_asm(insn: Instruction, pc: int, labels: Mapping[int, str]) -> str:
    operands = "".join(
        _RENDERERS[part.kind](part, insn, pc, labels) for part in OPERANDS[insn.spec.form]
    )
    return f"{insn.spec.mnemonic} {operands}" if operands else insn.spec.mnemonic


def format_instruction(
    insn: Instruction,
    pc: int = 0,
    syntax: str = "asm",
    *,
    labels: Mapping[int, str] | None = None,
    hex_imm: bool = True,
) -> str:
    """One instruction at slot ``pc`` as text; ``labels`` names slots for jump targets.

    ``hex_imm`` only affects ``pseudo-c`` (llvm-objdump's ``--[no-]print-imm-hex``).
    """
    if syntax == "asm":
        return _format_asm(insn, pc, labels or {})
    if syntax == "pseudo-c":
        return format_pseudo_c(insn, pc, labels, hex_imm)
    raise ValueError(f"unknown syntax {syntax!r} (expected one of {', '.join(SYNTAXES)})")


def label_names(program: Program) -> dict[int, str]:
    """A label for every jump or local-call target that starts an instruction (or ends the
    program): ``fn<pc>`` for call targets, ``L<pc>`` for the others."""
    starts = {*program.pcs, program.slot_count}
    names: dict[int, str] = {}
    for pc, insn in program:
        target = program.target_of(pc, insn)
        if target in starts and (target not in names or insn.spec.op is Op.CALL_LOCAL):
            names[target] = f"fn{target}" if insn.spec.op is Op.CALL_LOCAL else f"L{target}"
    return names


def disassemble(
    program: Program, syntax: str = "asm", *, labels: bool = False, hex_imm: bool = True
) -> str:
    """The program as text, one instruction per line (no trailing newline).

    With ``labels``, jump and call targets get label lines and instructions are
    indented; targets outside the program stay numeric.  In ``asm`` syntax,
    ``assemble(disassemble(p))`` rebuilds ``p`` byte for byte, with or without labels.
    """
    names = label_names(program) if labels else {}
    indent = "    " if labels else ""
    lines: list[str] = []
    for pc, insn in program:
        if pc in names:
            lines.append(f"{names[pc]}:")
        text = format_instruction(insn, pc, syntax, labels=names, hex_imm=hex_imm)
        lines.append(indent + text)
    if program.slot_count in names:
        lines.append(f"{names[program.slot_count]}:")
    return "\n".join(lines)
