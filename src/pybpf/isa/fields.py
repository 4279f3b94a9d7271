"""Field enums of the eBPF instruction encoding (RFC 9669, section 3).

An instruction is 64 bits: opcode (8), dst_reg (4), src_reg (4), offset (16, signed),
imm (32, signed), little-endian.  The opcode byte splits into a 3-bit class and
class-specific fields, named here once for every other module to use.
"""

from __future__ import annotations

from enum import Enum, IntEnum


class InsnClass(IntEnum):
    """The low three opcode bits (RFC 9669, 3.3)."""

    LD = 0x00
    LDX = 0x01
    ST = 0x02
    STX = 0x03
    ALU = 0x04
    JMP = 0x05
    JMP32 = 0x06
    ALU64 = 0x07


class Source(IntEnum):
    """Bit 3 of arithmetic and jump opcodes: immediate (K) or register (X) operand."""

    K = 0x00
    X = 0x08


class AluCode(IntEnum):
    """The high four opcode bits of ALU and ALU64 instructions (RFC 9669, 4.1)."""

    ADD = 0x00
    SUB = 0x10
    MUL = 0x20
    DIV = 0x30
    OR = 0x40
    AND = 0x50
    LSH = 0x60
    RSH = 0x70
    NEG = 0x80
    MOD = 0x90
    XOR = 0xA0
    MOV = 0xB0
    ARSH = 0xC0
    END = 0xD0


class JmpCode(IntEnum):
    """The high four opcode bits of JMP and JMP32 instructions (RFC 9669, 4.3)."""

    JA = 0x00
    JEQ = 0x10
    JGT = 0x20
    JGE = 0x30
    JSET = 0x40
    JNE = 0x50
    JSGT = 0x60
    JSGE = 0x70
    CALL = 0x80
    EXIT = 0x90
    JLT = 0xA0
    JLE = 0xB0
    JSLT = 0xC0
    JSLE = 0xD0


class SizeCode(IntEnum):
    """Bits 3-4 of load and store opcodes: the access width (RFC 9669, 5.1)."""

    W = 0x00
    H = 0x08
    B = 0x10
    DW = 0x18


SIZE_BYTES: dict[SizeCode, int] = {SizeCode.B: 1, SizeCode.H: 2, SizeCode.W: 4, SizeCode.DW: 8}
"""Access width in bytes of each size code."""


class ModeCode(IntEnum):
    """The high three bits of load and store opcodes (RFC 9669, 5.1)."""

    IMM = 0x00
    ABS = 0x20
    IND = 0x40
    MEM = 0x60
    MEMSX = 0x80
    ATOMIC = 0xC0


class AtomicCode(IntEnum):
    """The ``imm`` field of atomic instructions (RFC 9669, 5.3)."""

    ADD = 0x00
    OR = 0x40
    AND = 0x50
    XOR = 0xA0
    XCHG = 0xE0 | 0x01
    CMPXCHG = 0xF0 | 0x01


ATOMIC_FETCH = 0x01
"""The FETCH modifier bit of an atomic ``imm``."""


class PseudoSource(IntEnum):
    """``src_reg`` values of the 64-bit immediate load (RFC 9669, 5.4)."""

    IMM64 = 0
    MAP_BY_FD = 1
    MAP_VAL_BY_FD = 2
    VAR_ADDR = 3
    CODE_ADDR = 4
    MAP_BY_IDX = 5
    MAP_VAL_BY_IDX = 6


class CallKind(IntEnum):
    """``src_reg`` values of the call instruction (RFC 9669, 4.3.1)."""

    HELPER = 0
    LOCAL = 1
    HELPER_BTF = 2


class Group(Enum):
    """Conformance groups of RFC 9669, section 2.4."""

    __hash__ = object.__hash__  # members are singletons; C-level hashing for look-ups

    BASE32 = "base32"
    BASE64 = "base64"
    ATOMIC32 = "atomic32"
    ATOMIC64 = "atomic64"
    DIVMUL32 = "divmul32"
    DIVMUL64 = "divmul64"
    PACKET = "packet"
    CALLX = "callx"


REGISTER_COUNT = 11
"""r0 to r10; r10 is the read-only frame pointer."""

FRAME_POINTER = 10
