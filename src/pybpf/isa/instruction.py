"""Decoding bytes into :class:`Instruction` objects and encoding them back, byte-exact.

Decoding happens once: everything after the decoder works on instruction objects,
never on raw opcode bytes.  A 64-bit immediate load is one logical instruction
spanning two 8-byte slots; instruction indexes count slots, as the kernel does.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import NamedTuple

from pybpf.errors import DecodeError
from pybpf.isa.fields import REGISTER_COUNT
from pybpf.isa.table import BY_OPCODE, FORM_FIELDS, InsnSpec, Op

SLOT_SIZE = 8
_SLOT = struct.Struct("<BBhi")

U64_MASK = (1 << 64) - 1


class Instruction(NamedTuple):
    """One decoded instruction: its table row plus its field values.

    ``off`` is signed 16-bit and ``imm`` signed 32-bit, except for the 64-bit
    immediate loads, whose ``imm`` holds the whole unsigned 64-bit value (low word
    from the first slot, high word from the second).  A named tuple: immutable, and
    built several times faster than a frozen dataclass, which decoding feels.
    """

    spec: InsnSpec
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    @classmethod
    def make(
        cls, spec: InsnSpec, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0
    ) -> Instruction:
        """Build an instruction, filling in the field that selects ``spec``'s row."""
        fields = {"dst": dst, "src": src, "off": off, "imm": imm}
        if spec.selector is not None:
            name, value = spec.selector
            fields[name] = value
        return cls(spec, fields["dst"], fields["src"], fields["off"], fields["imm"])

    @property
    def slots(self) -> int:
        return self.spec.slots

    def encode(self) -> bytes:
        """The instruction's 8 (or 16) bytes, little-endian."""
        regs = (self.src << 4) | self.dst
        if self.spec.slots == 1:
            return _SLOT.pack(self.spec.opcode, regs, self.off, self.imm)
        value = self.imm & U64_MASK
        low = _signed32(value & 0xFFFFFFFF)
        high = _signed32(value >> 32)
        return _SLOT.pack(self.spec.opcode, regs, self.off, low) + _SLOT.pack(0, 0, 0, high)


_NO_DST_WRITES: dict[Op, tuple[int, ...]] = {
    Op.CALL: (0,),
    Op.CALLX: (0,),
    Op.CALL_LOCAL: (0, 1, 2, 3, 4, 5),
    Op.LD_ABS: (0,),
    Op.LD_IND: (0,),
}
"""Registers written by operations without a ``dst`` result: r0, and a callee's r1-r5."""


def written_registers(insn: Instruction) -> tuple[int, ...]:
    """The registers an instruction may change (a local call: whatever its callee may)."""
    spec = insn.spec
    if spec.writes_dst:
        return (insn.dst,)
    if spec.fetch:  # atomics with fetch write the old value back
        return (0,) if spec.op is Op.ATOMIC_CMPXCHG else (insn.src,)
    return _NO_DST_WRITES.get(spec.op, ())


def _signed32(value: int) -> int:
    return value - (1 << 32) if value & 0x80000000 else value


def _select(rows: tuple[InsnSpec, ...], fields: dict[str, int]) -> InsnSpec | None:
    for row in rows:
        if row.selector is None or fields[row.selector[0]] == row.selector[1]:
            return row
    return None


def _check_fields(spec: InsnSpec, fields: dict[str, int], pc: int) -> None:
    used = FORM_FIELDS[spec.form]
    selector_field = spec.selector[0] if spec.selector else None
    for name in ("dst", "src", "off", "imm"):
        if name in used or name == selector_field:
            continue
        if fields[name] != 0:
            raise DecodeError(
                f"{spec.mnemonic} (opcode 0x{spec.opcode:02x}) uses reserved field "
                f"{name}={fields[name]}, which must be 0",
                pc,
            )
    for name in ("dst", "src"):
        if name in used and fields[name] >= REGISTER_COUNT:
            raise DecodeError(f"invalid register r{fields[name]} in {name} of {spec.mnemonic}", pc)


def _unknown(
    opcode: int, fields: dict[str, int], rows: tuple[InsnSpec, ...], pc: int
) -> DecodeError:
    if not rows:
        return DecodeError(f"unknown opcode 0x{opcode:02x}", pc)
    name = rows[0].selector[0] if rows[0].selector else "imm"
    allowed = ", ".join(str(row.selector[1]) for row in rows if row.selector)
    return DecodeError(
        f"opcode 0x{opcode:02x} ({rows[0].mnemonic}) with {name}={fields[name]} is not an "
        f"instruction (valid {name}: {allowed})",
        pc,
    )


def decode_one(data: bytes | bytearray | memoryview, pc: int) -> Instruction:
    """Decode the instruction starting at slot ``pc`` of ``data``."""
    start = pc * SLOT_SIZE
    if start + SLOT_SIZE > len(data):
        raise DecodeError("program ends in the middle of an instruction", pc)
    opcode, regs, off, imm = _SLOT.unpack_from(data, start)
    fields = {"dst": regs & 0x0F, "src": regs >> 4, "off": off, "imm": imm}
    rows = BY_OPCODE.get(opcode, ())
    spec = _select(rows, fields)
    if spec is None:
        raise _unknown(opcode, fields, rows, pc)
    if spec.slots == 2:
        if start + 2 * SLOT_SIZE > len(data):
            raise DecodeError(f"{spec.mnemonic} is missing its second slot", pc)
        opcode2, regs2, off2, high = _SLOT.unpack_from(data, start + SLOT_SIZE)
        if opcode2 or regs2 or off2:
            raise DecodeError(
                f"second slot of {spec.mnemonic} must have opcode, registers and offset 0", pc
            )
        fields["imm"] = (imm & 0xFFFFFFFF) | ((high & 0xFFFFFFFF) << 32)
    _check_fields(spec, fields, pc)
    return Instruction(spec, **fields)


def _plain_rows() -> dict[int, tuple[InsnSpec, bool, bool, bool, bool]]:
    """Opcodes that alone name a one-slot row, with the fields that row may set."""
    plain = {}
    for opcode, rows in BY_OPCODE.items():
        if len(rows) == 1 and rows[0].selector is None and rows[0].slots == 1:
            used = FORM_FIELDS[rows[0].form]
            plain[opcode] = (rows[0], "dst" in used, "src" in used, "off" in used, "imm" in used)
    return plain


_PLAIN_ROWS = _plain_rows()
"""The decoder's fast path; every other opcode, and every invalid slot, takes decode_one."""


def iter_decode(data: bytes | bytearray | memoryview) -> Iterator[tuple[int, Instruction]]:
    """Yield ``(pc, instruction)`` for every instruction of a bytecode buffer."""
    if len(data) % SLOT_SIZE:
        raise DecodeError(
            f"program length {len(data)} is not a multiple of {SLOT_SIZE} bytes",
            len(data) // SLOT_SIZE,
        )
    pc = 0
    total = len(data) // SLOT_SIZE
    unpack_from = _SLOT.unpack_from
    plain_rows = _PLAIN_ROWS
    while pc < total:
        opcode, regs, off, imm = unpack_from(data, pc * SLOT_SIZE)
        plain = plain_rows.get(opcode)
        if plain is not None:
            spec, has_dst, has_src, has_off, has_imm = plain
            dst, src = regs & 0x0F, regs >> 4
            if (
                (not dst or (has_dst and dst < REGISTER_COUNT))
                and (not src or (has_src and src < REGISTER_COUNT))
                and (not off or has_off)
                and (not imm or has_imm)
            ):
                yield pc, Instruction(spec, dst, src, off, imm)
                pc += 1
                continue
        insn = decode_one(data, pc)  # the general path: selectors, two slots, errors
        yield pc, insn
        pc += insn.slots


def decode(data: bytes | bytearray | memoryview) -> list[Instruction]:
    """Decode a whole bytecode buffer into its instructions, in order."""
    return [insn for _pc, insn in iter_decode(data)]


def encode(instructions: list[Instruction] | tuple[Instruction, ...]) -> bytes:
    """Encode instructions back into bytecode."""
    return b"".join(insn.encode() for insn in instructions)
