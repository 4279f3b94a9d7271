"""Executable semantics of eBPF operations on Python integers (RFC 9669, section 4-5).

Each function takes unsigned operands already reduced to the operation's width and
returns the unsigned result at that width; callers zero-extend 32-bit results by
construction.  The reference interpreter calls these; other tiers are tested
against it, so this module is where the ISA's arithmetic is defined.
"""

from __future__ import annotations

from collections.abc import Callable

from pybpf.isa.table import Op

MASK32 = 0xFFFF_FFFF
MASK64 = 0xFFFF_FFFF_FFFF_FFFF
WIDTH_MASK: dict[int, int] = {8: 0xFF, 16: 0xFFFF, 32: MASK32, 64: MASK64}


def to_signed(value: int, bits: int) -> int:
    """Interpret the low ``bits`` of ``value`` as two's complement."""
    value &= WIDTH_MASK[bits]
    return value - (1 << bits) if value >> (bits - 1) else value


def sign_extend(value: int, from_bits: int, to_bits: int = 64) -> int:
    """Sign-extend the low ``from_bits`` of ``value`` to an unsigned ``to_bits`` value."""
    return to_signed(value, from_bits) & WIDTH_MASK[to_bits]


def _truncated_quotient(a: int, b: int) -> int:
    """Signed division rounding toward zero, as C and RFC 9669 SDIV do."""
    quotient = abs(a) // abs(b)
    return -quotient if (a < 0) != (b < 0) else quotient


def _div(a: int, b: int, width: int) -> int:
    return a // b if b else 0


def _sdiv(a: int, b: int, width: int) -> int:
    if not b:
        return 0
    # INT_MIN / -1 overflows back to INT_MIN once masked to the width
    return _truncated_quotient(to_signed(a, width), to_signed(b, width)) & WIDTH_MASK[width]


def _mod(a: int, b: int, width: int) -> int:
    return a % b if b else a


def _smod(a: int, b: int, width: int) -> int:
    if not b:
        return a
    sa, sb = to_signed(a, width), to_signed(b, width)
    return (sa - _truncated_quotient(sa, sb) * sb) & WIDTH_MASK[width]


def _lsh(a: int, b: int, width: int) -> int:
    return (a << (b & (width - 1))) & WIDTH_MASK[width]


def _rsh(a: int, b: int, width: int) -> int:
    return a >> (b & (width - 1))


def _arsh(a: int, b: int, width: int) -> int:
    return (to_signed(a, width) >> (b & (width - 1))) & WIDTH_MASK[width]


BinaryOp = Callable[[int, int, int], int]

BINARY_OPS: dict[Op, BinaryOp] = {
    Op.ADD: lambda a, b, w: (a + b) & WIDTH_MASK[w],
    Op.SUB: lambda a, b, w: (a - b) & WIDTH_MASK[w],
    Op.MUL: lambda a, b, w: (a * b) & WIDTH_MASK[w],
    Op.DIV: _div,
    Op.SDIV: _sdiv,
    Op.MOD: _mod,
    Op.SMOD: _smod,
    Op.OR: lambda a, b, w: a | b,
    Op.AND: lambda a, b, w: a & b,
    Op.XOR: lambda a, b, w: a ^ b,
    Op.LSH: _lsh,
    Op.RSH: _rsh,
    Op.ARSH: _arsh,
    Op.MOV: lambda a, b, w: b,
}
"""``dst = dst OP src`` for each binary ALU operation: f(dst, src, width)."""


def neg(value: int, width: int) -> int:
    return -value & WIDTH_MASK[width]


def movsx(value: int, size: int, width: int) -> int:
    """MOVSX: sign-extend the low ``size`` bytes of ``value`` to ``width`` bits."""
    return sign_extend(value, size * 8, width)


def byte_swap(value: int, size: int) -> int:
    """Reverse the low ``size`` bytes of ``value``; the upper bits become zero."""
    return int.from_bytes((value & WIDTH_MASK[size * 8]).to_bytes(size, "little"), "big")


def truncate(value: int, size: int) -> int:
    """Keep the low ``size`` bytes: a conversion to the host's own byte order."""
    return value & WIDTH_MASK[size * 8]


# The host byte order of the eBPF machine is little-endian (RFC 9669, 3), so LE
# conversions only truncate and BE conversions swap; BSWAP always swaps.
BYTE_ORDER_OPS: dict[Op, Callable[[int, int], int]] = {
    Op.LE: truncate,
    Op.BE: byte_swap,
    Op.BSWAP: byte_swap,
}

Condition = Callable[[int, int, int], bool]

CONDITIONS: dict[Op, Condition] = {
    Op.JEQ: lambda a, b, w: a == b,
    Op.JNE: lambda a, b, w: a != b,
    Op.JGT: lambda a, b, w: a > b,
    Op.JGE: lambda a, b, w: a >= b,
    Op.JLT: lambda a, b, w: a < b,
    Op.JLE: lambda a, b, w: a <= b,
    Op.JSET: lambda a, b, w: bool(a & b),
    Op.JSGT: lambda a, b, w: to_signed(a, w) > to_signed(b, w),
    Op.JSGE: lambda a, b, w: to_signed(a, w) >= to_signed(b, w),
    Op.JSLT: lambda a, b, w: to_signed(a, w) < to_signed(b, w),
    Op.JSLE: lambda a, b, w: to_signed(a, w) <= to_signed(b, w),
}
"""Jump conditions on operands reduced to the comparison width: f(dst, src, width)."""

ATOMIC_OPS: dict[Op, BinaryOp] = {
    Op.ATOMIC_ADD: BINARY_OPS[Op.ADD],
    Op.ATOMIC_OR: BINARY_OPS[Op.OR],
    Op.ATOMIC_AND: BINARY_OPS[Op.AND],
    Op.ATOMIC_XOR: BINARY_OPS[Op.XOR],
    Op.ATOMIC_XCHG: BINARY_OPS[Op.MOV],
}
"""New memory value of each read-modify-write atomic: f(old, src, width)."""


def immediate_operand(imm: int, width: int) -> int:
    """The unsigned operand an immediate stands for: sign-extended to 64 bits, then cut.

    RFC 9669 4.1: for ALU64 (and 64-bit jumps) the 32-bit immediate is sign-extended
    to 64 bits, and unsigned operations then read it as a 64-bit unsigned value.
    """
    return imm & WIDTH_MASK[width]
