"""The eBPF instruction set: field enums, the instruction table, decoding and encoding."""

from pybpf.isa.fields import Group, InsnClass
from pybpf.isa.instruction import SLOT_SIZE, Instruction, decode, decode_one, encode, iter_decode
from pybpf.isa.table import BY_MNEMONIC, BY_OPCODE, INSTRUCTIONS, Form, InsnSpec, Op, find_spec

__all__ = [
    "BY_MNEMONIC",
    "BY_OPCODE",
    "INSTRUCTIONS",
    "SLOT_SIZE",
    "Form",
    "Group",
    "InsnClass",
    "InsnSpec",
    "Instruction",
    "Op",
    "decode",
    "decode_one",
    "encode",
    "find_spec",
    "iter_decode",
]
