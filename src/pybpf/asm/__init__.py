"""Assembler, disassembler and program builder, all derived from the instruction table.

``assemble`` reads rbpf/uBPF and bpf_conformance assembly, ``disassemble`` prints
canonical assembly (which ``assemble`` reads back byte for byte) or llvm-objdump
pseudo-C, and ``ProgramBuilder`` writes programs from Python.
"""

from pybpf.asm.assembler import assemble
from pybpf.asm.builder import (
    R0,
    R1,
    R2,
    R3,
    R4,
    R5,
    R6,
    R7,
    R8,
    R9,
    R10,
    ProgramBuilder,
    Reg,
    method_name,
)
from pybpf.asm.disassembler import SYNTAXES, disassemble, format_instruction, label_names

__all__ = [
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "SYNTAXES",
    "ProgramBuilder",
    "Reg",
    "assemble",
    "disassemble",
    "format_instruction",
    "label_names",
    "method_name",
]
