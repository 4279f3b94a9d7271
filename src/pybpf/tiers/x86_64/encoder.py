"""The x86-64 instruction encoder of the JIT tier: a small assembler with labels.

:class:`Assembler` appends machine code to a ``bytearray``; each method emits one
instruction form, and its docstring cites the form in the Intel 64 and IA-32
Architectures Software Developer's Manual, Volume 2 (the "SDM").

Encodings are data.  Opcode groups (the ALU, unary and shift groups, the load and
store forms) are tables below, and every register-direct encoding (``mod = 11``)
is built once at import: such a form costs one table look-up and one append.
Memory operands (``[base + index*scale + disp]``) are encoded with a few integer
operations and no allocation beyond the appended bytes.

Anything without a valid encoding (register number outside 0-15, RSP as index,
scale 3, an immediate or displacement that does not fit) raises
:class:`EncodingError`; the encoder never truncates a value silently.

Branches go to labels.  A backward branch uses ``rel8`` when it fits; a forward
branch uses ``rel32`` (or ``rel8`` when the caller promises it is short) and is
patched by :meth:`Assembler.finish`.  There is no relaxation: the offset of every
instruction is final once emitted, so a compiler can record code offsets freely.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Final, NamedTuple, NewType, TypeAlias, cast

from pybpf.errors import BpfError

__all__ = [
    "ALU_ROWS",
    "AluOp",
    "Assembler",
    "Cond",
    "EncodingError",
    "Label",
    "Reg",
    "ShiftOp",
    "UnaryOp",
]


class EncodingError(BpfError, ValueError):
    """An instruction that has no x86-64 encoding; always a bug in the code generator."""


class Reg(IntEnum):
    """General-purpose registers by encoding number (SDM Vol. 2, Table 2-2, REX.B/R/X)."""

    RAX = 0
    RCX = 1
    RDX = 2
    RBX = 3
    RSP = 4
    RBP = 5
    RSI = 6
    RDI = 7
    R8 = 8
    R9 = 9
    R10 = 10
    R11 = 11
    R12 = 12
    R13 = 13
    R14 = 14
    R15 = 15


class Cond(IntEnum):
    """Condition codes ``tttn`` (SDM Vol. 1, Appendix B.1.4.7): Jcc, SETcc and CMOVcc."""

    O = 0x0  # noqa: E741 - the SDM's name
    NO = 0x1
    B = 0x2
    AE = 0x3
    E = 0x4
    NE = 0x5
    BE = 0x6
    A = 0x7
    S = 0x8
    NS = 0x9
    P = 0xA
    NP = 0xB
    L = 0xC
    GE = 0xD
    LE = 0xE
    G = 0xF


class AluOp(IntEnum):
    """The eight group-1 ALU operations; the value is the ``/digit`` of 81 and 83."""

    ADD = 0
    OR = 1
    ADC = 2
    SBB = 3
    AND = 4
    SUB = 5
    XOR = 6
    CMP = 7


class UnaryOp(IntEnum):
    """Group-3 operations on one explicit operand (F7 /digit); the value is the digit."""

    NOT = 2
    NEG = 3
    MUL = 4
    IMUL = 5
    DIV = 6
    IDIV = 7


class ShiftOp(IntEnum):
    """Group-2 rotates and shifts (C1/D1/D3 /digit); the value is the digit."""

    ROL = 0
    ROR = 1
    RCL = 2
    RCR = 3
    SHL = 4
    SHR = 5
    SAR = 7


class AluRow(NamedTuple):
    """One group-1 ALU operation's encodings (SDM Vol. 2, e.g. ADD)."""

    mnemonic: str
    rm_r: int
    """Opcode of ``OP r/m, r`` (e.g. ``01 /r ADD r/m32, r32``)."""
    acc_imm: int
    """Opcode of ``OP eAX, imm32`` (e.g. ``05 id ADD EAX, imm32``)."""
    digit: int
    """``/digit`` of ``81 /digit id`` and ``83 /digit ib``."""


ALU_ROWS: Final[dict[AluOp, AluRow]] = {
    AluOp.ADD: AluRow("add", 0x01, 0x05, 0),
    AluOp.OR: AluRow("or", 0x09, 0x0D, 1),
    AluOp.ADC: AluRow("adc", 0x11, 0x15, 2),
    AluOp.SBB: AluRow("sbb", 0x19, 0x1D, 3),
    AluOp.AND: AluRow("and", 0x21, 0x25, 4),
    AluOp.SUB: AluRow("sub", 0x29, 0x2D, 5),
    AluOp.XOR: AluRow("xor", 0x31, 0x35, 6),
    AluOp.CMP: AluRow("cmp", 0x39, 0x3D, 7),
}
"""Group-1 ALU operations: SDM Vol. 2, ADD/OR/ADC/SBB/AND/SUB/XOR/CMP."""

Label = NewType("Label", int)
"""A branch target made by :meth:`Assembler.label`, placed by :meth:`Assembler.bind`."""

_W: Final = 0x08
"""REX.W: 64-bit operand size."""
_REX: Final = 0x40
"""The REX prefix with no bits set: makes SPL/BPL/SIL/DIL addressable as byte registers."""

_PACK_I32 = struct.Struct("<i").pack
_PACK_U16 = struct.Struct("<H").pack
_PACK_U32 = struct.Struct("<I").pack
_PACK_U64 = struct.Struct("<Q").pack

MemForm: TypeAlias = tuple[bytes, ...]
"""The eight ``prefix [REX] opcode`` heads of one memory-operand form, indexed ``0bRXB``."""


def _rex_heads(w: bool, byte_rm: bool) -> list[bytes]:
    """The REX prefix (or nothing) of each register-direct pair, indexed ``reg << 4 | rm``.

    ``byte_rm``: ``rm`` names a byte register, and 4-7 mean SPL..DIL only with a REX
    prefix present (without one they are AH..BH; SDM Vol. 2, section 2.2.1.2).
    """
    heads = []
    for reg in range(16):
        for rm in range(16):
            rex = (_W if w else 0) | (reg & 8) >> 1 | (rm & 8) >> 3
            if byte_rm and 4 <= rm < 8:
                rex |= _REX
            heads.append(bytes((_REX | rex,)) if rex else b"")
    return heads


_HEADS: Final = {(w, b): _rex_heads(w, b) for w in (False, True) for b in (False, True)}
_MODRM_RR: Final = [
    bytes((0xC0 | (reg & 7) << 3 | (rm & 7),)) for reg in range(16) for rm in range(16)
]
"""ModRM with mod = 11 (register direct), indexed ``reg << 4 | rm``."""


def _rr_table(
    opcode: bytes, w: bool, prefix: bytes = b"", byte_rm: bool = False
) -> tuple[bytes, ...]:
    """``prefix [REX] opcode ModRM(11, reg, rm)`` for every pair, indexed ``reg << 4 | rm``."""
    return tuple(
        prefix + h + opcode + m for h, m in zip(_HEADS[w, byte_rm], _MODRM_RR, strict=True)
    )


def _plus_r_table(opcode: bytes, w: bool, prefix: bytes = b"") -> tuple[bytes, ...]:
    """``opcode + rd`` forms (register in the low three opcode bits, REX.B on top)."""
    out = []
    for r in range(16):
        rex = (_W if w else 0) | (r & 8) >> 3
        head = bytes((_REX | rex,)) if rex else b""
        out.append(prefix + head + opcode[:-1] + bytes((opcode[-1] + (r & 7),)))
    return tuple(out)


def _digit_row(
    opcode: bytes, digit: int, w: bool, prefix: bytes = b"", byte_rm: bool = False
) -> tuple[bytes, ...]:
    """``opcode /digit`` applied to each of the 16 registers, indexed by register."""
    heads = _HEADS[w, byte_rm]
    return tuple(
        prefix + heads[digit << 4 | rm] + opcode + _MODRM_RR[digit << 4 | rm] for rm in range(16)
    )


def _group_table(
    opcode: bytes, digits: list[int], w: bool, prefix: bytes = b""
) -> dict[int, bytes]:
    """``opcode /digit`` on a register, keyed ``digit << 4 | rm``, for the valid digits only."""
    heads = _HEADS[w, False]
    return {
        key: prefix + heads[key] + opcode + _MODRM_RR[key]
        for d in digits
        for key in range(d << 4, (d + 1) << 4)
    }


def _alu_rr_table(w: bool) -> dict[int, bytes]:
    """``OP r/m, r`` for every ALU op, keyed ``op << 8 | src << 4 | dst``."""
    table: dict[int, bytes] = {}
    for op, row in ALU_ROWS.items():
        table.update(
            zip(range(op << 8, (op + 1) << 8), _rr_table(bytes((row.rm_r,)), w), strict=True)
        )
    return table


def _alu_acc_table(w: bool) -> dict[int, bytes]:
    """``OP eAX/rAX, imm32`` heads keyed by ALU op."""
    return {op: (b"\x48" if w else b"") + bytes((row.acc_imm,)) for op, row in ALU_ROWS.items()}


_ALU_DIGITS: Final = [row.digit for row in ALU_ROWS.values()]
_XOR_KEY: Final = int(AluOp.XOR) << 8
_UNARY_DIGITS: Final = [int(op) for op in UnaryOp]
_SHIFT_DIGITS: Final = [int(op) for op in ShiftOp]

# Register-register forms, indexed ``reg << 4 | rm`` (see each method for the operand roles).
_MOV_RR32: Final = _rr_table(b"\x89", False)  # 89 /r        MOV r/m32, r32
_MOV_RR64: Final = _rr_table(b"\x89", True)  # REX.W 89 /r  MOV r/m64, r64
_ALU_RR32: Final = _alu_rr_table(False)  # 01 /r ... 39 /r
_ALU_RR64: Final = _alu_rr_table(True)
_TEST_RR32: Final = _rr_table(b"\x85", False)  # 85 /r        TEST r/m32, r32
_TEST_RR64: Final = _rr_table(b"\x85", True)
_IMUL_RR32: Final = _rr_table(b"\x0f\xaf", False)  # 0F AF /r IMUL r32, r/m32
_IMUL_RR64: Final = _rr_table(b"\x0f\xaf", True)
_MOVZX8_RR: Final = _rr_table(b"\x0f\xb6", False, byte_rm=True)  # MOVZX r32, r/m8
_MOVZX16_RR: Final = _rr_table(b"\x0f\xb7", False)  # 0F B7 /r  MOVZX r32, r/m16
_MOVSX_RR: Final[dict[int, dict[int, tuple[bytes, ...]]]] = {
    32: {
        8: _rr_table(b"\x0f\xbe", False, byte_rm=True),  # 0F BE /r MOVSX r32, r/m8
        16: _rr_table(b"\x0f\xbf", False),  # 0F BF /r MOVSX r32, r/m16
    },
    64: {
        8: _rr_table(b"\x0f\xbe", True, byte_rm=True),  # REX.W 0F BE /r MOVSX r64, r/m8
        16: _rr_table(b"\x0f\xbf", True),  # REX.W 0F BF /r MOVSX r64, r/m16
        32: _rr_table(b"\x63", True),  # REX.W 63 /r MOVSXD r64, r/m32
    },
}

# Immediate forms: the bytes before the immediate, per register.
_MOV_R32_IMM: Final = _plus_r_table(b"\xb8", False)  # B8+rd id     MOV r32, imm32
_MOVABS: Final = _plus_r_table(b"\xb8", True)  # REX.W B8+rd io  MOV r64, imm64
_MOV_RM64_IMM: Final = _digit_row(b"\xc7", 0, True)  # REX.W C7 /0 id MOV r/m64, imm32
_ALU_I8_32: Final = _group_table(b"\x83", _ALU_DIGITS, False)  # 83 /digit ib
_ALU_I8_64: Final = _group_table(b"\x83", _ALU_DIGITS, True)
_ALU_I32_32: Final = _group_table(b"\x81", _ALU_DIGITS, False)  # 81 /digit id
_ALU_I32_64: Final = _group_table(b"\x81", _ALU_DIGITS, True)
_ALU_ACC32: Final = _alu_acc_table(False)  # e.g. 05 id ADD EAX, imm32
_ALU_ACC64: Final = _alu_acc_table(True)  # e.g. REX.W 05 id ADD RAX, imm32
_TEST_I32: Final = _digit_row(b"\xf7", 0, False)  # F7 /0 id  TEST r/m32, imm32
_TEST_I64: Final = _digit_row(b"\xf7", 0, True)
_IMUL_I8: Final = {  # 6B /r ib IMUL r, r/m, imm8
    32: _rr_table(b"\x6b", False),
    64: _rr_table(b"\x6b", True),
}
_IMUL_I32: Final = {  # 69 /r id IMUL r, r/m, imm32
    32: _rr_table(b"\x69", False),
    64: _rr_table(b"\x69", True),
}

# Group 3 (F7 /digit) and group 2 shifts, keyed ``digit << 4 | reg``.
_UNARY32: Final = _group_table(b"\xf7", _UNARY_DIGITS, False)
_UNARY64: Final = _group_table(b"\xf7", _UNARY_DIGITS, True)
_SHIFT_CL: Final = {  # D3 /digit: OP r/m, CL
    16: _group_table(b"\xd3", _SHIFT_DIGITS, False, b"\x66"),
    32: _group_table(b"\xd3", _SHIFT_DIGITS, False),
    64: _group_table(b"\xd3", _SHIFT_DIGITS, True),
}
_SHIFT_1: Final = {  # D1 /digit: OP r/m, 1
    16: _group_table(b"\xd1", _SHIFT_DIGITS, False, b"\x66"),
    32: _group_table(b"\xd1", _SHIFT_DIGITS, False),
    64: _group_table(b"\xd1", _SHIFT_DIGITS, True),
}
_SHIFT_I8: Final = {  # C1 /digit ib: OP r/m, imm8
    16: _group_table(b"\xc1", _SHIFT_DIGITS, False, b"\x66"),
    32: _group_table(b"\xc1", _SHIFT_DIGITS, False),
    64: _group_table(b"\xc1", _SHIFT_DIGITS, True),
}

# Single-register forms, indexed by register.
_BSWAP32: Final = _plus_r_table(b"\x0f\xc8", False)  # 0F C8+rd BSWAP r32
_BSWAP64: Final = _plus_r_table(b"\x0f\xc8", True)  # REX.W 0F C8+rd BSWAP r64
_PUSH: Final = _plus_r_table(b"\x50", False)  # 50+rd PUSH r64 (64-bit by default)
_POP: Final = _plus_r_table(b"\x58", False)  # 58+rd POP r64
_CALL_R: Final = _digit_row(b"\xff", 2, False)  # FF /2 CALL r/m64
_JMP_R: Final = _digit_row(b"\xff", 4, False)  # FF /4 JMP r/m64
_SETCC: Final = tuple(  # 0F 90+cc /0 SETcc r/m8, indexed cond << 4 | reg
    code for cc in range(16) for code in _digit_row(bytes((0x0F, 0x90 | cc)), 0, False, b"", True)
)
_JCC32: Final = tuple(bytes((0x0F, 0x80 | cc)) for cc in range(16))  # 0F 80+cc cd Jcc rel32


def _mem_heads(opcode: bytes, w: bool, prefix: bytes = b"", force_rex: bool = False) -> MemForm:
    """``prefix [REX] opcode`` of a memory form, indexed by the REX.R/X/B bits (``0bRXB``).

    ``force_rex``: emit a REX prefix even with no bit set (byte stores of SPL..DIL).
    """
    heads = []
    for rxb in range(8):
        rex = (_W if w else 0) | rxb | (_REX if force_rex else 0)
        heads.append(prefix + (bytes((_REX | rex,)) if rex else b"") + opcode)
    return tuple(heads)


def _mem_tails(mod: int) -> tuple[tuple[bytes, ...], tuple[bytes, ...]]:
    """ModRM (+ SIB) after the opcode, for one ``mod``, without and with an index.

    Without index: indexed ``(reg & 7) << 3 | (base & 7)``.  With index: indexed
    ``ss << 9 | (reg & 7) << 6 | (index & 7) << 3 | (base & 7)``.  SDM Vol. 2,
    Tables 2-2 and 2-3: r/m = 100 means a SIB byte follows, so an RSP/R12 base
    needs one (SIB 00 100 100: no index); mod = 00 with base 101 means RIP-relative
    (or no base, under SIB), so for an RBP/R13 base the disp-0 tail is mod = 01
    with an explicit disp8 of 0.
    """
    plain = []
    for reg in range(8):
        for base in range(8):
            if mod == 0x00 and base == 5:
                plain.append(bytes((0x40 | reg << 3 | base, 0)))
            elif base == 4:
                plain.append(bytes((mod | reg << 3 | 4, 0x24)))
            else:
                plain.append(bytes((mod | reg << 3 | base,)))
    indexed = []
    for ss in range(4):
        for reg in range(8):
            for index in range(8):
                for base in range(8):
                    sib = ss << 6 | index << 3 | base
                    if mod == 0x00 and base == 5:
                        indexed.append(bytes((0x40 | reg << 3 | 4, sib, 0)))
                    else:
                        indexed.append(bytes((mod | reg << 3 | 4, sib)))
    return tuple(plain), tuple(indexed)


(_TAIL0, _SIB_TAIL0) = _mem_tails(0x00)  # no displacement (disp8 0 for RBP/R13)
(_TAIL8, _SIB_TAIL8) = _mem_tails(0x40)  # disp8 follows
(_TAIL32, _SIB_TAIL32) = _mem_tails(0x80)  # disp32 follows

_SCALE_KEY: Final[dict[int, int]] = {1: 0 << 9, 2: 1 << 9, 4: 2 << 9, 8: 3 << 9}
"""SIB.scale (00, 01, 10, 11 for 1, 2, 4, 8) positioned for the indexed tail tables."""

_LOAD_ZX: Final[dict[int, MemForm]] = {
    8: _mem_heads(b"\x0f\xb6", False),  # 0F B6 /r  MOVZX r32, r/m8
    16: _mem_heads(b"\x0f\xb7", False),  # 0F B7 /r MOVZX r32, r/m16
    32: _mem_heads(b"\x8b", False),  # 8B /r          MOV r32, r/m32 (zero-extends)
    64: _mem_heads(b"\x8b", True),  # REX.W 8B /r     MOV r64, r/m64
}
_LOAD_SX: Final[dict[int, MemForm]] = {
    8: _mem_heads(b"\x0f\xbe", True),  # REX.W 0F BE /r MOVSX r64, r/m8
    16: _mem_heads(b"\x0f\xbf", True),  # REX.W 0F BF /r MOVSX r64, r/m16
    32: _mem_heads(b"\x63", True),  # REX.W 63 /r         MOVSXD r64, r/m32
    64: _LOAD_ZX[64],
}
_STORE_R: Final[dict[int, MemForm]] = {
    8: _mem_heads(b"\x88", False),  # 88 /r          MOV r/m8, r8
    16: _mem_heads(b"\x89", False, b"\x66"),  # 66 89 /r MOV r/m16, r16
    32: _mem_heads(b"\x89", False),  # 89 /r         MOV r/m32, r32
    64: _mem_heads(b"\x89", True),  # REX.W 89 /r    MOV r/m64, r64
}
_STORE_R8_REX: Final = _mem_heads(b"\x88", False, force_rex=True)  # REX 88 /r: SPL..DIL
_STORE_I: Final[dict[int, MemForm]] = {
    8: _mem_heads(b"\xc6", False),  # C6 /0 ib       MOV r/m8, imm8
    16: _mem_heads(b"\xc7", False, b"\x66"),  # 66 C7 /0 iw MOV r/m16, imm16
    32: _mem_heads(b"\xc7", False),  # C7 /0 id      MOV r/m32, imm32
    64: _mem_heads(b"\xc7", True),  # REX.W C7 /0 id MOV r/m64, imm32 (sign-extended)
}
_STORE_I_RANGE: Final[dict[int, tuple[int, int]]] = {
    8: (-0x80, 0xFF),
    16: (-0x8000, 0xFFFF),
    32: (-0x8000_0000, 0xFFFF_FFFF),
    64: (-0x8000_0000, 0x7FFF_FFFF),
}
"""Accepted immediates of each store size (signed or unsigned; 64-bit: signed imm32)."""
_LEA: Final = {32: _mem_heads(b"\x8d", False), 64: _mem_heads(b"\x8d", True)}  # 8D /r
_XADD: Final = {  # F0 0F C1 /r LOCK XADD r/m, r
    32: _mem_heads(b"\x0f\xc1", False, b"\xf0"),
    64: _mem_heads(b"\x0f\xc1", True, b"\xf0"),
}
_CMPXCHG: Final = {  # F0 0F B1 /r LOCK CMPXCHG r/m, r
    32: _mem_heads(b"\x0f\xb1", False, b"\xf0"),
    64: _mem_heads(b"\x0f\xb1", True, b"\xf0"),
}
_XCHG: Final = {32: _mem_heads(b"\x87", False), 64: _mem_heads(b"\x87", True)}  # 87 /r
_ALU_RM: Final[dict[int, dict[int, MemForm]]] = {  # 03|0B|..|3B /r OP r, r/m
    size: {op: _mem_heads(bytes((row.rm_r + 2,)), size == 64) for op, row in ALU_ROWS.items()}
    for size in (32, 64)
}
_ALU_MI8: Final[dict[int, MemForm]] = {  # 83 /digit ib OP r/m, imm8
    size: _mem_heads(b"\x83", size == 64) for size in (32, 64)
}
_ALU_MI32: Final[dict[int, MemForm]] = {  # 81 /digit id OP r/m, imm32
    size: _mem_heads(b"\x81", size == 64) for size in (32, 64)
}
_LOCK_ALU: Final[dict[int, dict[int, MemForm]]] = {  # F0 01|09|..|31 /r LOCK OP r/m, r
    size: {
        op: _mem_heads(bytes((row.rm_r,)), size == 64, b"\xf0")
        for op, row in ALU_ROWS.items()
        if op != AluOp.CMP  # LOCK CMP is #UD
    }
    for size in (32, 64)
}


def _invalid(
    form: str,
    size: object = None,
    sizes: tuple[int, ...] = (),
    regs: dict[str, object] | None = None,
    op: object = None,
    ops: type[IntEnum] | None = None,
) -> EncodingError:
    """The error for an encoder call with no encoding: names the first bad operand."""
    for name, value in (regs or {}).items():
        if value is not None and not (isinstance(value, int) and 0 <= value < 16):
            return EncodingError(f"{form}: {name}={value!r} is not a register number 0-15")
    if sizes and size not in sizes:
        return EncodingError(f"{form}: size {size!r} is not one of {sizes}")
    if ops is not None and op not in list(ops):
        names = ", ".join(member.name for member in ops)
        return EncodingError(f"{form}: {op!r} is not a valid {ops.__name__} ({names})")
    return EncodingError(f"{form}: no encoding for these operands")


def _imm_error(form: str, imm: int, low: int, high: int) -> EncodingError:
    return EncodingError(f"{form}: immediate {imm:#x} is outside [{low:#x}, {high:#x}]")


class Assembler:
    """Appends x86-64 machine code to :attr:`buf`; branches target :class:`Label` s.

    Registers are :class:`Reg` numbers (any int 0-15 works; plain ints avoid enum
    attribute look-ups in hot loops).  ``size`` is the operand size in bits.
    A 32-bit operation writes its 32-bit result zero-extended to 64 bits.
    Memory operands are ``[base + index*scale + disp]``; ``index`` may be any
    register except RSP, ``scale`` one of 1, 2, 4, 8, ``disp`` a signed 32-bit value.
    """

    __slots__ = ("_fixups", "_labels", "buf")

    def __init__(self) -> None:
        self.buf = bytearray()
        self._labels: list[int] = []
        """Offset of each label, -1 while unbound."""
        self._fixups: list[tuple[int, int, int]] = []
        """(offset of a rel8/rel32 field, label, field width) for each forward branch."""

    @property
    def pos(self) -> int:
        """The offset the next instruction will be emitted at."""
        return len(self.buf)

    @property
    def references(self) -> int:
        """How many labels and label references (branches to patch) there are: code
        written while this stays the same can be copied elsewhere as it is."""
        return len(self._labels) + len(self._fixups)

    # --- moves ------------------------------------------------------------------

    def mov_rr(self, dst: int, src: int, size: int = 64) -> None:
        """``REX.W + 89 /r`` MOV r/m64, r64, or ``89 /r`` MOV r/m32, r32 (zero-extends)."""
        if (dst | src) & ~15 or (size != 64 and size != 32):
            raise _invalid("mov_rr", size, (32, 64), {"dst": dst, "src": src})
        self.buf += (_MOV_RR64 if size == 64 else _MOV_RR32)[src << 4 | dst]

    def mov_ri(self, dst: int, imm: int, size: int = 64) -> None:
        """Load an immediate with the shortest form that yields it; flags are kept.

        64-bit: ``B8+rd id`` MOV r32, imm32 when ``imm`` is in [0, 2**32) (the write
        zero-extends), else ``REX.W + C7 /0 id`` MOV r/m64, imm32 when it is a
        sign-extended imm32, else ``REX.W + B8+rd io`` MOV r64, imm64 (movabs).
        ``imm`` may be given signed or unsigned.  32-bit: ``B8+rd id``.
        """
        if dst & ~15:
            raise _invalid("mov_ri", regs={"dst": dst})
        buf = self.buf
        if size == 64:
            if not -0x8000_0000_0000_0000 <= imm <= 0xFFFF_FFFF_FFFF_FFFF:
                raise _imm_error("mov_ri", imm, -0x8000_0000_0000_0000, 0xFFFF_FFFF_FFFF_FFFF)
            imm &= 0xFFFF_FFFF_FFFF_FFFF
            if imm <= 0xFFFF_FFFF:
                buf += _MOV_R32_IMM[dst]
                buf += _PACK_U32(imm)
            elif imm >= 0xFFFF_FFFF_8000_0000:
                buf += _MOV_RM64_IMM[dst]
                buf += _PACK_U32(imm & 0xFFFF_FFFF)
            else:
                buf += _MOVABS[dst]
                buf += _PACK_U64(imm)
        elif size == 32:
            if not -0x8000_0000 <= imm <= 0xFFFF_FFFF:
                raise _imm_error("mov_ri", imm, -0x8000_0000, 0xFFFF_FFFF)
            buf += _MOV_R32_IMM[dst]
            buf += _PACK_U32(imm & 0xFFFF_FFFF)
        else:
            raise _invalid("mov_ri", size, (32, 64))

    def zero(self, reg: int) -> None:
        """Clear ``reg`` with ``31 /r`` XOR r32, r32 (the idiom; clobbers flags)."""
        if reg & ~15:
            raise _invalid("zero", regs={"reg": reg})
        self.buf += _ALU_RR32[_XOR_KEY | reg << 4 | reg]

    def movzx_rr(self, dst: int, src: int, src_size: int) -> None:
        """Zero-extend the low ``src_size`` bits of ``src`` into all 64 bits of ``dst``.

        8: ``0F B6 /r`` MOVZX r32, r/m8 (REX for SPL/BPL/SIL/DIL); 16: ``0F B7 /r``
        MOVZX r32, r/m16; 32: ``89 /r`` MOV r32, r32.
        """
        if (dst | src) & ~15:
            raise _invalid("movzx_rr", regs={"dst": dst, "src": src})
        if src_size == 8:
            self.buf += _MOVZX8_RR[dst << 4 | src]
        elif src_size == 16:
            self.buf += _MOVZX16_RR[dst << 4 | src]
        elif src_size == 32:
            self.buf += _MOV_RR32[src << 4 | dst]
        else:
            raise _invalid("movzx_rr", src_size, (8, 16, 32))

    def movsx_rr(self, dst: int, src: int, src_size: int, size: int = 64) -> None:
        """Sign-extend the low ``src_size`` bits of ``src`` to ``size`` bits in ``dst``.

        ``REX.W + 0F BE /r`` MOVSX r64, r/m8; ``REX.W + 0F BF /r`` MOVSX r64, r/m16;
        ``REX.W + 63 /r`` MOVSXD r64, r/m32; and the r32 forms ``0F BE /r``, ``0F BF /r``.
        """
        table = _MOVSX_RR.get(size, {}).get(src_size)
        if table is None or (dst | src) & ~15:
            if (dst | src) & ~15 or size not in _MOVSX_RR:
                raise _invalid("movsx_rr", size, (32, 64), {"dst": dst, "src": src})
            raise EncodingError(
                f"movsx_rr: no sign extension from {src_size!r} to {size} bits "
                f"(sources: {tuple(_MOVSX_RR[size])})"
            )
        self.buf += table[dst << 4 | src]

    def cmov(self, cond: Cond, dst: int, src: int, size: int = 64) -> None:
        """``REX.W + 0F 40+cc /r`` CMOVcc r64, r/m64 (or the r32 form without REX.W)."""
        if cond & ~15 or (dst | src) & ~15 or (size != 64 and size != 32):
            raise _invalid("cmov", size, (32, 64), {"dst": dst, "src": src}, cond, Cond)
        rex = (_W if size == 64 else 0) | (dst & 8) >> 1 | (src & 8) >> 3
        buf = self.buf
        if rex:
            buf.append(_REX | rex)
        buf.append(0x0F)
        buf.append(0x40 | cond)
        buf.append(0xC0 | (dst & 7) << 3 | (src & 7))

    def setcc(self, cond: Cond, reg: int) -> None:
        """``0F 90+cc /0`` SETcc r/m8 on the low byte of ``reg`` (REX for SPL..DIL)."""
        if cond & ~15 or reg & ~15:
            raise _invalid("setcc", regs={"reg": reg}, op=cond, ops=Cond)
        self.buf += _SETCC[cond << 4 | reg]

    def bswap(self, reg: int, size: int = 64) -> None:
        """``REX.W + 0F C8+rd`` BSWAP r64 or ``0F C8+rd`` BSWAP r32 (zero-extends)."""
        if reg & ~15 or (size != 64 and size != 32):
            raise _invalid("bswap", size, (32, 64), {"reg": reg})
        self.buf += (_BSWAP64 if size == 64 else _BSWAP32)[reg]

    # --- arithmetic -------------------------------------------------------------

    def alu_rr(self, op: AluOp, dst: int, src: int, size: int = 64) -> None:
        """``[REX.W] 01|09|11|19|21|29|31|39 /r`` OP r/m, r: ``dst = dst OP src``."""
        code = None
        if not (dst | src) & ~15:
            if size == 64:
                code = _ALU_RR64.get(op << 8 | src << 4 | dst)
            elif size == 32:
                code = _ALU_RR32.get(op << 8 | src << 4 | dst)
        if code is None:
            raise _invalid("alu_rr", size, (32, 64), {"dst": dst, "src": src}, op, AluOp)
        self.buf += code

    def alu_ri(self, op: AluOp, dst: int, imm: int, size: int = 64) -> None:
        """``dst = dst OP imm`` in the shortest form.

        ``[REX.W] 83 /digit ib`` when ``imm`` is a sign-extended imm8, else
        ``[REX.W] 05|0D|..|3D id`` OP rAX, imm32 for RAX, else ``[REX.W] 81 /digit id``.
        64-bit: ``imm`` is a signed 32-bit value (sign-extended by the CPU).
        32-bit: any 32-bit pattern, given signed or unsigned.
        """
        if size == 64:
            if not -0x8000_0000 <= imm <= 0x7FFF_FFFF:
                raise _imm_error("alu_ri", imm, -0x8000_0000, 0x7FFF_FFFF)
            i8, i32 = _ALU_I8_64, _ALU_I32_64
        elif size == 32:
            if not -0x8000_0000 <= imm <= 0xFFFF_FFFF:
                raise _imm_error("alu_ri", imm, -0x8000_0000, 0xFFFF_FFFF)
            if imm > 0x7FFF_FFFF:
                imm -= 0x1_0000_0000
            i8, i32 = _ALU_I8_32, _ALU_I32_32
        else:
            raise _invalid("alu_ri", size, (32, 64))
        code = None if dst & ~15 else (i8 if -0x80 <= imm <= 0x7F else i32).get(op << 4 | dst)
        if code is None:
            raise _invalid("alu_ri", regs={"dst": dst}, op=op, ops=AluOp)
        buf = self.buf
        if -0x80 <= imm <= 0x7F:
            buf += code
            buf.append(imm & 0xFF)
        else:
            buf += (_ALU_ACC64 if size == 64 else _ALU_ACC32)[op] if dst == 0 else code
            buf += _PACK_I32(imm)

    def test_rr(self, a: int, b: int, size: int = 64) -> None:
        """``REX.W + 85 /r`` TEST r/m64, r64 or ``85 /r`` TEST r/m32, r32 (flags of a & b)."""
        if (a | b) & ~15 or (size != 64 and size != 32):
            raise _invalid("test_rr", size, (32, 64), {"a": a, "b": b})
        self.buf += (_TEST_RR64 if size == 64 else _TEST_RR32)[b << 4 | a]

    def test_ri(self, reg: int, imm: int, size: int = 64) -> None:
        """``[REX.W] F7 /0 id`` TEST r/m, imm32 (``[REX.W] A9 id`` for RAX).

        64-bit: ``imm`` is a signed 32-bit value; 32-bit: any 32-bit pattern.
        """
        if reg & ~15:
            raise _invalid("test_ri", regs={"reg": reg})
        if size == 64:
            if not -0x8000_0000 <= imm <= 0x7FFF_FFFF:
                raise _imm_error("test_ri", imm, -0x8000_0000, 0x7FFF_FFFF)
            self.buf += b"\x48\xa9" if reg == 0 else _TEST_I64[reg]
        elif size == 32:
            if not -0x8000_0000 <= imm <= 0xFFFF_FFFF:
                raise _imm_error("test_ri", imm, -0x8000_0000, 0xFFFF_FFFF)
            self.buf += b"\xa9" if reg == 0 else _TEST_I32[reg]
        else:
            raise _invalid("test_ri", size, (32, 64))
        self.buf += _PACK_U32(imm & 0xFFFF_FFFF)

    def imul_rr(self, dst: int, src: int, size: int = 64) -> None:
        """``REX.W + 0F AF /r`` IMUL r64, r/m64 or ``0F AF /r`` IMUL r32, r/m32."""
        if (dst | src) & ~15 or (size != 64 and size != 32):
            raise _invalid("imul_rr", size, (32, 64), {"dst": dst, "src": src})
        self.buf += (_IMUL_RR64 if size == 64 else _IMUL_RR32)[dst << 4 | src]

    def imul_rri(self, dst: int, src: int, imm: int, size: int = 64) -> None:
        """``dst = src * imm``: ``[REX.W] 6B /r ib`` IMUL r, r/m, imm8, else ``69 /r id``.

        ``imm`` is a signed 32-bit value (32-bit: any 32-bit pattern).
        """
        if (dst | src) & ~15 or (size != 64 and size != 32):
            raise _invalid("imul_rri", size, (32, 64), {"dst": dst, "src": src})
        high = 0x7FFF_FFFF if size == 64 else 0xFFFF_FFFF
        if not -0x8000_0000 <= imm <= high:
            raise _imm_error("imul_rri", imm, -0x8000_0000, high)
        if imm > 0x7FFF_FFFF:
            imm -= 0x1_0000_0000
        if -0x80 <= imm <= 0x7F:
            self.buf += _IMUL_I8[size][dst << 4 | src]
            self.buf.append(imm & 0xFF)
        else:
            self.buf += _IMUL_I32[size][dst << 4 | src]
            self.buf += _PACK_I32(imm)

    def unary(self, op: UnaryOp, reg: int, size: int = 64) -> None:
        """``[REX.W] F7 /digit``: NOT, NEG, MUL, IMUL, DIV, IDIV r/m.

        MUL/IMUL multiply rAX by ``reg`` into rDX:rAX; DIV/IDIV divide rDX:rAX by
        ``reg``, quotient in rAX, remainder in rDX.
        """
        code = None
        if not reg & ~15:
            if size == 64:
                code = _UNARY64.get(op << 4 | reg)
            elif size == 32:
                code = _UNARY32.get(op << 4 | reg)
        if code is None:
            raise _invalid("unary", size, (32, 64), {"reg": reg}, op, UnaryOp)
        self.buf += code

    def cdq(self) -> None:
        """``99`` CDQ: EDX:EAX = sign-extend EAX."""
        self.buf.append(0x99)

    def cqo(self) -> None:
        """``REX.W + 99`` CQO: RDX:RAX = sign-extend RAX."""
        self.buf += b"\x48\x99"

    def shift_cl(self, op: ShiftOp, reg: int, size: int = 64) -> None:
        """``[66|REX.W] D3 /digit`` OP r/m, CL (the CPU masks the count to 5 or 6 bits)."""
        table = _SHIFT_CL.get(size)
        code = None if table is None or reg & ~15 else table.get(op << 4 | reg)
        if code is None:
            raise _invalid("shift_cl", size, (16, 32, 64), {"reg": reg}, op, ShiftOp)
        self.buf += code

    def shift_ri(self, op: ShiftOp, reg: int, imm: int, size: int = 64) -> None:
        """``[66|REX.W] C1 /digit ib`` OP r/m, imm8, or ``D1 /digit`` when ``imm`` is 1.

        ``imm`` must be below ``size`` (``rol r16, 8`` is the 16-bit byte swap).
        """
        table = _SHIFT_1.get(size) if imm == 1 else _SHIFT_I8.get(size)
        code = None if table is None or reg & ~15 else table.get(op << 4 | reg)
        if code is None:
            raise _invalid("shift_ri", size, (16, 32, 64), {"reg": reg}, op, ShiftOp)
        if not 0 <= imm < size:
            raise _imm_error("shift_ri", imm, 0, size - 1)
        self.buf += code
        if imm != 1:
            self.buf.append(imm)

    # --- memory -----------------------------------------------------------------

    def _mem(
        self, heads: MemForm, reg: int, base: int, disp: int, index: int | None, scale: int
    ) -> None:
        """``prefix [REX] opcode ModRM [SIB] [disp8|disp32]`` for ``[base + index*scale + disp]``.

        ``reg`` goes in ModRM.reg (a register or a /digit).  disp8 is used when the
        displacement fits, none when it is 0 (see :func:`_mem_tails` for RBP/R13).
        """
        buf = self.buf
        if index is None:
            if (reg | base) & ~15:
                raise _invalid("memory operand", regs={"reg": reg, "base": base})
            head = heads[(reg & 8) >> 1 | (base & 8) >> 3]
            key = (reg & 7) << 3 | (base & 7)
            if disp == 0:
                buf += head
                buf += _TAIL0[key]
            elif -0x80 <= disp <= 0x7F:
                buf += head
                buf += _TAIL8[key]
                buf.append(disp & 0xFF)
            elif -0x8000_0000 <= disp <= 0x7FFF_FFFF:
                buf += head
                buf += _TAIL32[key]
                buf += _PACK_I32(disp)
            else:
                raise EncodingError(f"displacement {disp:#x} does not fit in 32 bits")
            return
        ss = _SCALE_KEY.get(scale)
        if ss is None or (reg | base | index) & ~15 or index == 4:
            if index == 4:
                raise EncodingError("RSP cannot be an index register")
            if ss is None:
                raise EncodingError(f"scale {scale!r} is not 1, 2, 4 or 8")
            raise _invalid("memory operand", regs={"reg": reg, "base": base, "index": index})
        head = heads[(reg & 8) >> 1 | (index & 8) >> 2 | (base & 8) >> 3]
        key = ss | (reg & 7) << 6 | (index & 7) << 3 | (base & 7)
        if disp == 0:
            buf += head
            buf += _SIB_TAIL0[key]
        elif -0x80 <= disp <= 0x7F:
            buf += head
            buf += _SIB_TAIL8[key]
            buf.append(disp & 0xFF)
        elif -0x8000_0000 <= disp <= 0x7FFF_FFFF:
            buf += head
            buf += _SIB_TAIL32[key]
            buf += _PACK_I32(disp)
        else:
            raise EncodingError(f"displacement {disp:#x} does not fit in 32 bits")

    def load(
        self,
        dst: int,
        base: int,
        disp: int = 0,
        size: int = 64,
        signed: bool = False,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """Load ``size`` bits from memory into ``dst``, extended to 64 bits.

        Zero-extending: ``0F B6 /r`` MOVZX r32, m8; ``0F B7 /r`` MOVZX r32, m16;
        ``8B /r`` MOV r32, m32; ``REX.W + 8B /r`` MOV r64, m64.  Sign-extending:
        ``REX.W + 0F BE /r`` MOVSX r64, m8; ``REX.W + 0F BF /r`` MOVSX r64, m16;
        ``REX.W + 63 /r`` MOVSXD r64, m32.
        """
        heads = (_LOAD_SX if signed else _LOAD_ZX).get(size)
        if heads is None:
            raise _invalid("load", size, (8, 16, 32, 64))
        self._mem(heads, dst, base, disp, index, scale)

    def store_r(
        self,
        base: int,
        disp: int,
        src: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """Store the low ``size`` bits of ``src``: ``88 /r`` MOV m8, r8 (REX for
        SPL..DIL), ``66 89 /r`` MOV m16, r16, ``89 /r`` MOV m32, r32, ``REX.W + 89 /r``."""
        heads = _STORE_R.get(size)
        if heads is None:
            raise _invalid("store_r", size, (8, 16, 32, 64))
        if size == 8 and 4 <= src < 8:
            heads = _STORE_R8_REX
        self._mem(heads, src, base, disp, index, scale)

    def store_i(
        self,
        base: int,
        disp: int,
        imm: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """Store an immediate: ``C6 /0 ib`` MOV m8, imm8; ``66 C7 /0 iw`` MOV m16, imm16;
        ``C7 /0 id`` MOV m32, imm32; ``REX.W + C7 /0 id`` MOV m64, imm32 (sign-extended).

        ``imm`` may be given signed or unsigned, except that a 64-bit store takes a
        signed 32-bit value.
        """
        heads = _STORE_I.get(size)
        if heads is None:
            raise _invalid("store_i", size, (8, 16, 32, 64))
        low, high = _STORE_I_RANGE[size]
        if not low <= imm <= high:
            raise _imm_error("store_i", imm, low, high)
        self._mem(heads, 0, base, disp, index, scale)
        if size == 8:
            self.buf.append(imm & 0xFF)
        elif size == 16:
            self.buf += _PACK_U16(imm & 0xFFFF)
        else:
            self.buf += _PACK_U32(imm & 0xFFFF_FFFF)

    def lea(
        self,
        dst: int,
        base: int,
        disp: int = 0,
        index: int | None = None,
        scale: int = 1,
        size: int = 64,
    ) -> None:
        """``REX.W + 8D /r`` LEA r64, m (or ``8D /r`` LEA r32, m).

        ``dst = base + index*scale + disp``; flags are kept.
        """
        heads = _LEA.get(size)
        if heads is None:
            raise _invalid("lea", size, (32, 64))
        self._mem(heads, dst, base, disp, index, scale)

    # --- atomics ----------------------------------------------------------------

    def lock_xadd(
        self,
        base: int,
        disp: int,
        src: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """``F0 [REX.W] 0F C1 /r`` LOCK XADD m, r: ``src, [m] = [m], [m] + src``."""
        heads = _XADD.get(size)
        if heads is None:
            raise _invalid("lock_xadd", size, (32, 64))
        self._mem(heads, src, base, disp, index, scale)

    def lock_cmpxchg(
        self,
        base: int,
        disp: int,
        src: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """``F0 [REX.W] 0F B1 /r`` LOCK CMPXCHG m, r: if ``[m] == rAX`` then ``[m] = src``;
        rAX receives the old ``[m]`` either way."""
        heads = _CMPXCHG.get(size)
        if heads is None:
            raise _invalid("lock_cmpxchg", size, (32, 64))
        self._mem(heads, src, base, disp, index, scale)

    def xchg_mr(
        self,
        base: int,
        disp: int,
        reg: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """``[REX.W] 87 /r`` XCHG m, r (locked implicitly by the CPU; no F0 needed)."""
        heads = _XCHG.get(size)
        if heads is None:
            raise _invalid("xchg_mr", size, (32, 64))
        self._mem(heads, reg, base, disp, index, scale)

    def lock_alu(
        self,
        op: AluOp,
        base: int,
        disp: int,
        src: int,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """``F0 [REX.W] 01|09|11|19|21|29|31 /r`` LOCK OP m, r: ``[m] = [m] OP src``.

        CMP cannot take a LOCK prefix (it would raise #UD) and is refused.
        """
        forms = _LOCK_ALU.get(size)
        if forms is None:
            raise _invalid("lock_alu", size, (32, 64))
        heads = forms.get(op)
        if heads is None:
            raise EncodingError(f"lock_alu: {op!r} cannot be locked (lockable: {tuple(forms)})")
        self._mem(heads, src, base, disp, index, scale)

    def alu_rm(
        self,
        op: AluOp,
        dst: int,
        base: int,
        disp: int = 0,
        size: int = 64,
        index: int | None = None,
        scale: int = 1,
    ) -> None:
        """``[REX.W] 03|0B|13|1B|23|2B|33|3B /r`` OP r, m: ``dst = dst OP [base + index*scale
        + disp]``."""
        forms = _ALU_RM.get(size)
        if forms is None:
            raise _invalid("alu_rm", size, (32, 64))
        self._mem(forms[op], dst, base, disp, index, scale)

    def alu_mi(self, op: AluOp, base: int, disp: int, imm: int, size: int = 64) -> None:
        """``[REX.W] 83 /digit ib`` or ``81 /digit id`` OP m, imm: ``[base + disp] OP= imm``.

        The immediate is sign-extended to the operand size.
        """
        if size not in _ALU_MI32:
            raise _invalid("alu_mi", size, (32, 64))
        if not -0x8000_0000 <= imm <= 0x7FFF_FFFF:
            raise _imm_error("alu_mi", imm, -0x8000_0000, 0x7FFF_FFFF)
        digit = ALU_ROWS[op].digit
        if -0x80 <= imm <= 0x7F:
            self._mem(_ALU_MI8[size], digit, base, disp, None, 1)
            self.buf.append(imm & 0xFF)
        else:
            self._mem(_ALU_MI32[size], digit, base, disp, None, 1)
            self.buf += _PACK_U32(imm & 0xFFFF_FFFF)

    # --- control flow -------------------------------------------------------------

    def label(self) -> Label:
        """A new, unbound label."""
        self._labels.append(-1)
        return Label(len(self._labels) - 1)

    def labels(self, count: int) -> list[Label]:
        """``count`` new, unbound labels (one call for a function's block labels)."""
        first = len(self._labels)
        self._labels += [-1] * count
        return cast(list[Label], list(range(first, first + count)))

    def bind(self, label: Label) -> None:
        """Place ``label`` at the current offset; each label is bound once."""
        if not 0 <= label < len(self._labels):
            raise EncodingError(f"bind: {label!r} is not a label of this assembler")
        if self._labels[label] >= 0:
            raise EncodingError(f"bind: label {label} is already bound")
        self._labels[label] = len(self.buf)

    def jcc(self, cond: Cond, label: Label, short: bool = False) -> None:
        """``70+cc cb`` Jcc rel8 or ``0F 80+cc cd`` Jcc rel32 to ``label``.

        A bound (backward) label gets rel8 when it fits.  An unbound (forward) one
        gets rel32, or rel8 with ``short=True``; :meth:`finish` raises if a short
        forward branch does not reach.
        """
        if cond & ~15:
            raise _invalid("jcc", op=cond, ops=Cond)
        labels = self._labels
        if not 0 <= label < len(labels):
            raise EncodingError(f"jcc: {label!r} is not a label of this assembler")
        target = labels[label]
        buf = self.buf
        if target >= 0:
            rel = target - len(buf) - 2
            if rel >= -0x80:
                buf.append(0x70 | cond)
                buf.append(rel & 0xFF)
            else:
                buf += _JCC32[cond]
                buf += _PACK_I32(rel - 4)
        elif short:
            buf.append(0x70 | cond)
            buf.append(0)
            self._fixups.append((len(buf) - 1, label, 1))
        else:
            buf += _JCC32[cond]
            buf += b"\x00\x00\x00\x00"
            self._fixups.append((len(buf) - 4, label, 4))

    def jmp(self, label: Label, short: bool = False) -> None:
        """``EB cb`` JMP rel8 or ``E9 cd`` JMP rel32 to ``label`` (rel8 rules as :meth:`jcc`)."""
        labels = self._labels
        if not 0 <= label < len(labels):
            raise EncodingError(f"jmp: {label!r} is not a label of this assembler")
        target = labels[label]
        buf = self.buf
        if target >= 0:
            rel = target - len(buf) - 2
            if rel >= -0x80:
                buf.append(0xEB)
                buf.append(rel & 0xFF)
            else:
                buf.append(0xE9)
                buf += _PACK_I32(rel - 3)
        elif short:
            buf += b"\xeb\x00"
            self._fixups.append((len(buf) - 1, label, 1))
        else:
            buf += b"\xe9\x00\x00\x00\x00"
            self._fixups.append((len(buf) - 4, label, 4))

    def call(self, label: Label) -> None:
        """``E8 cd`` CALL rel32 to ``label`` (for calls within the generated code)."""
        labels = self._labels
        if not 0 <= label < len(labels):
            raise EncodingError(f"call: {label!r} is not a label of this assembler")
        target = labels[label]
        buf = self.buf
        if target >= 0:
            buf.append(0xE8)
            buf += _PACK_I32(target - len(buf) - 4)
        else:
            buf += b"\xe8\x00\x00\x00\x00"
            self._fixups.append((len(buf) - 4, label, 4))

    def call_r(self, reg: int) -> None:
        """``FF /2`` CALL r/m64: call the address in ``reg``."""
        if reg & ~15:
            raise _invalid("call_r", regs={"reg": reg})
        self.buf += _CALL_R[reg]

    def jmp_r(self, reg: int) -> None:
        """``FF /4`` JMP r/m64: jump to the address in ``reg``."""
        if reg & ~15:
            raise _invalid("jmp_r", regs={"reg": reg})
        self.buf += _JMP_R[reg]

    def ret(self) -> None:
        """``C3`` RET (near)."""
        self.buf.append(0xC3)

    def push(self, reg: int) -> None:
        """``50+rd`` PUSH r64 (REX.B for R8-R15)."""
        if reg & ~15:
            raise _invalid("push", regs={"reg": reg})
        self.buf += _PUSH[reg]

    def pop(self, reg: int) -> None:
        """``58+rd`` POP r64 (REX.B for R8-R15)."""
        if reg & ~15:
            raise _invalid("pop", regs={"reg": reg})
        self.buf += _POP[reg]

    def int3(self) -> None:
        """``CC`` INT3: breakpoint trap."""
        self.buf.append(0xCC)

    def nop(self) -> None:
        """``90`` NOP."""
        self.buf.append(0x90)

    def align(self, boundary: int) -> None:
        """Pad with the SDM's recommended multi-byte NOPs (``0F 1F /0``, Vol. 2B,
        NOP) up to the next multiple of ``boundary`` (a power of two), at most nine
        bytes a NOP."""
        if boundary < 1 or boundary & (boundary - 1):
            raise EncodingError(f"align: {boundary} is not a power of two")
        missing = -len(self.buf) & (boundary - 1)
        while missing:
            size = min(missing, 9)
            self.buf += _NOPS[size]
            missing -= size

    def finish(self) -> bytes:
        """Patch every forward branch and return the code.

        Raises :class:`EncodingError` if a branch targets a label never bound, or a
        short forward branch does not reach its label.
        """
        buf = self.buf
        labels = self._labels
        for field, label, width in self._fixups:
            target = labels[label]
            if target < 0:
                raise EncodingError(f"finish: label {label} is branched to but never bound")
            rel = target - field - width
            if width == 1:
                if rel > 0x7F:
                    raise EncodingError(
                        f"finish: short branch at {field - 1:#x} cannot reach label {label} "
                        f"at {target:#x} (rel {rel} > 127)"
                    )
                buf[field] = rel
            else:
                buf[field : field + 4] = _PACK_I32(rel)
        return bytes(buf)


_NOPS: dict[int, bytes] = {
    1: b"\x90",
    2: b"\x66\x90",
    3: b"\x0f\x1f\x00",
    4: b"\x0f\x1f\x40\x00",
    5: b"\x0f\x1f\x44\x00\x00",
    6: b"\x66\x0f\x1f\x44\x00\x00",
    7: b"\x0f\x1f\x80\x00\x00\x00\x00",
    8: b"\x0f\x1f\x84\x00\x00\x00\x00\x00",
    9: b"\x66\x0f\x1f\x84\x00\x00\x00\x00\x00",
}
"""The NOP of each length from 1 to 9 bytes (SDM Vol. 2B, NOP: the recommended
multi-byte sequences)."""
